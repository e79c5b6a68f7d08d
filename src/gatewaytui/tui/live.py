"""Following a session's updates: coalesced, applied at most `refresh_rate` times a second
inside `batch_update()` (Dolphie's habit), held back while paused.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable
from typing import Any

from textual.app import App, ScreenStackError
from textual.css.query import NoMatches

from gatewaytui.client.connection import Update
from gatewaytui.client.session import Session
from gatewaytui.client.store import Change
from gatewaytui.tui.views.base import View
from gatewaytui.tui.views.deck import ViewDeck


class LiveFeed:
    """Draws the session's state into the views of `deck` and the screen on top of them
    (a details screen); `after_draw(full, change)` redraws the rest (the header; `full` once a
    second, on a full redraw and on a resync's snapshot: fleet-wide scans and the banner too),
    `on_connection` hears connection changes.

    A resync (a reconnect's new snapshot) is drawn whole in one batch: the views, the header
    and the banner together, so no frame mixes the old gateway's rows or counts with the new
    one's, and the first live frame after a reconnect is already the new picture."""

    def __init__(
        self,
        app: App[Any],
        deck: ViewDeck,
        *,
        rate: float,
        after_draw: Callable[[bool, Change | None], None],
        on_connection: Callable[[], None],
    ) -> None:
        self._app = app
        self._deck = deck
        self._interval = 1.0 / rate
        self._after_draw = after_draw
        self._on_connection = on_connection
        self._session: Session | None = None
        self._pending: Change | None = None
        self._frozen = False
        self.paused = False
        self.clock: float | None = None  # whole seconds, advanced by `tick`

    def follow(self, session: Session) -> None:
        """Follow `session` (and stop following the previous one)."""
        self._session = session
        self._pending = None
        self._app.run_worker(self._follow(session), exclusive=True, group="updates")

    async def _follow(self, session: Session) -> None:
        """Sleeping between updates caps the redraw rate (no pile-up)."""
        async for update in session.updates():
            if session is not self._session:
                return
            self._take(update)
            await asyncio.sleep(self._interval)

    def _take(self, update: Update) -> None:
        if update.change is not None:
            self._pending = (
                update.change if self._pending is None else self._pending.merge(update.change)
            )
        if update.state_changed:
            self._on_connection()
        if not self.paused:
            self.apply_pending()

    def catch_up(self) -> None:
        """Draw what the session holds and the feed has not drawn yet (between two paced
        updates), before something else draws from the store: the store may already hold a
        reconnect's new snapshot while the rows on screen are the old gateway's."""
        session = self._session
        if session is None:
            return
        update = session.take_update()
        if update is not None:
            self._take(update)

    def apply_pending(self) -> None:
        change, self._pending = self._pending, None
        if change is None or (change.empty and not change.snapshot):
            return
        session = self._session
        assert session is not None
        try:
            screen = self._app.screen
        except ScreenStackError:  # the app is shutting down: no screen left to draw on
            return
        with self._app.batch_update():
            self._deck.apply(session.store, change)
            if hasattr(screen, "show_state"):
                screen.show_state(session.store, change)
            self._after_draw(change.snapshot, change)
        if change.snapshot and not self._frozen:
            # The first big state and its rows are long-lived: once drawn, keep the GC's
            # full passes off them (they were the tail of key-to-frame latency).
            self._frozen = True
            self._app.call_after_refresh(gc.freeze)

    def show(self, view_id: str) -> View:
        """Show another view. One hidden while changes came is redrawn from the store, which
        can be ahead of the screen (the connection applies messages between two paced
        updates): so first draw what the session holds, and count the header again when the
        view was redrawn, all in one batch, so the header and the rows come from one state
        of the store (a view drawn from the newer store under the counts of the last update
        showed "workers 0/0" over a row)."""
        session = self._session
        assert session is not None, "show() before follow()"
        with self._app.batch_update():
            self.catch_up()
            if self._deck.show(view_id, session.store):
                self._after_draw(True, None)
        return self._deck.view

    def redraw(self) -> None:
        """Everything from the store (start, resume, context switch)."""
        if self._session is None:
            return
        with self._app.batch_update():
            self._deck.redraw(self._session.store)
            self._after_draw(True, None)

    def toggle_pause(self) -> None:
        """Pause holds updates back; resuming draws what arrived meanwhile."""
        self.paused = not self.paused
        if not self.paused:
            self.apply_pending()
            self.redraw()

    def tick(self) -> None:
        """Once a second: histories always; the clock-dependent parts unless paused."""
        self.clock = float(int(time.time()))
        if self._session is None:
            return
        self._deck.sample(self._session.store)
        if self.paused:
            return
        self.catch_up()
        app = self._app
        with app.batch_update(), contextlib.suppress(NoMatches):  # a tick during teardown
            self._deck.view.tick()
            screen = app.screen
            if hasattr(screen, "tick") and screen is not app.screen_stack[0]:
                screen.tick()
            self._after_draw(True, None)
