"""The panel's chrome: the header and the connection banner, and the state they draw.

Both widgets render from one reactive state object (`HeaderState`, `BannerState`) and never
read the app. `PanelChrome` composes those states from the session, the store and what the
panel shows now; the app only says when (after a draw, on a connection change, when a view,
a filter or the marks change).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from gatewaytui.client.connection import ConnectionStatus
from gatewaytui.client.session import Session
from gatewaytui.client.store import Change, StateStore
from gatewaytui.tui.actions import PanelActions
from gatewaytui.tui.config import ContextConfig, token_source
from gatewaytui.tui.fleet import FleetCounts, fleet_counts
from gatewaytui.tui.formatting import SERVING_STATUSES, parse_ts
from gatewaytui.tui.notices import TerminalNotices
from gatewaytui.tui.views.deck import ViewDeck
from gatewaytui.tui.widgets.banner import BannerState, ConnectionBanner
from gatewaytui.tui.widgets.filter_bar import FilterBar
from gatewaytui.tui.widgets.header import (
    ConnectionLine,
    Counts,
    GatewayHeader,
    HeaderState,
    Place,
    server_line,
)


class Pausable(Protocol):
    @property
    def paused(self) -> bool: ...


class ChromeHost(Protocol):
    """What the header and banner show of the panel (the app provides it)."""

    @property
    def session(self) -> Session: ...
    @property
    def store(self) -> StateStore: ...
    @property
    def context(self) -> ContextConfig | None: ...
    @property
    def snapshot(self) -> Path | None: ...
    @property
    def read_only(self) -> bool: ...
    @property
    def status_styles(self) -> dict[str, str]: ...
    @property
    def feed(self) -> Pausable: ...
    def now(self) -> float: ...


class ServingCount:
    """Workers that take jobs now, kept by diff (O(rows changed)), so the header's
    `workers S/N` agrees with the rows on every frame, a resync's first one included (a
    count taken once a second said "workers 5/2" for up to a second after a reconnect)."""

    def __init__(self) -> None:
        self._ids: set[str] = set()

    def __len__(self) -> int:
        return len(self._ids)

    def recount(self, workers: Mapping[str, Mapping[str, Any]]) -> None:
        self._ids = {i for i, w in workers.items() if w.get("status") in SERVING_STATUSES}

    def apply(self, workers: Mapping[str, Mapping[str, Any]], change: Change) -> None:
        if change.snapshot:
            self.recount(workers)
            return
        for ids in (change.added.get("workers", ()), change.changed.get("workers", ())):
            for worker_id in ids:
                worker = workers.get(worker_id)
                if worker is not None and worker.get("status") in SERVING_STATUSES:
                    self._ids.add(worker_id)
                else:
                    self._ids.discard(worker_id)
        self._ids.difference_update(change.removed.get("workers", ()))


def _terminal_writer(host: object) -> Callable[[str], None] | None:
    """Textual's driver's `write` (how Textual writes the bell and OSC 52), if running."""
    driver = getattr(host, "_driver", None)
    return driver.write if driver is not None else None


class PanelChrome:
    """The header and banner widgets of the main screen, kept up to date.

    Held by the app (not queried): a modal on top must not hide them from the update paths.
    """

    def __init__(
        self, host: ChromeHost, deck: ViewDeck, filter_bar: FilterBar, actions: PanelActions
    ) -> None:
        self._host = host
        self._deck = deck
        self._filter_bar = filter_bar
        self._actions = actions
        self.header = GatewayHeader(id="header")
        self.banner = ConnectionBanner(id="banner")
        self._serving = ServingCount()
        self.fleet: FleetCounts | None = None  # replicas and the fleet's queue, once a second
        # The counts as of the last draw of the views: a header redrawn for another reason
        # (a key, the marks) must not count a store the rows have not caught up with yet.
        self._counts = Counts()
        self.notices = TerminalNotices(lambda: _terminal_writer(host))

    @property
    def serving(self) -> int:
        """Workers serving now, fleet-wide."""
        return len(self._serving)

    def after_draw(self, full: bool, change: Change | None = None) -> None:
        """After the views (`change`: what they just drew): drains that finished, the header;
        once a second and on a redraw (`full`) the banner too, and the serving workers are
        counted again from scratch (the diffs keep the count between)."""
        if full:
            self._serving.recount(self._host.store.workers)
            self.fleet = fleet_counts(self._host.store)
        elif change is not None:
            self._serving.apply(self._host.store.workers, change)
        self._counts = self._count()
        self._actions.check_drains()  # before the header lists the drains still going
        self.update_header()
        if full:
            self.banner.state = self.banner_state()
        context = self._host.context
        self.notices.observe(
            self._host.store, context.notify if context else None, self._host.session.name
        )

    def update_header(self) -> None:
        self.header.state = self.header_state()

    def connection_changed(self) -> None:
        """The connection changed, not the rows: the banner and the header's connection line.
        The counts stay those of the last draw of the views: the store may already hold a
        state the rows do not show yet (paused, a reconnect's snapshot held back), and
        counting it here drew "workers 1/1" over rows of the old gateway."""
        self.update_header()
        self.banner.state = self.banner_state()

    def banner_state(self) -> BannerState:
        host = self._host
        state = host.session.state
        server = host.store.server
        return BannerState(
            state,
            host.session.name,
            host.session.url or "",
            retry_in=state.retry_in(),
            has_state=host.store.has_state,
            token_source=token_source(host.context) if host.context is not None else None,
            cluster=str(server.get("cluster") or "off"),
            replica=server.get("replica"),
        )

    def header_state(self) -> HeaderState:
        """The header's state from the store, the session and the shown view."""
        host = self._host
        store, state, context = host.store, host.session.state, host.context
        server = store.server
        now = host.now()
        known = state.status in (ConnectionStatus.LIVE, ConnectionStatus.OFFLINE)
        status, drain = server_line(server, host.status_styles, known=known, now=now)
        return HeaderState(
            badge=(context.display_name if context and not host.snapshot else None)
            or host.session.name,
            badge_color=context.color if context else None,
            read_only=host.read_only,
            paused=host.feed.paused,
            server_status=status,
            server_drain=drain,
            connection=ConnectionLine(
                state.status,
                parse_ts(store.as_of),
                state.retry_in(),
                None if known else state.data_age(now),
            ),
            counts=self._counts,
            place=self._place(),
        )

    def _count(self) -> Counts:
        store = self._host.store
        server = store.server
        queue = server.get("queue") or {}
        fleet = self.fleet
        return Counts(
            self.serving,
            len(store.workers),
            len(store.jobs),
            fleet.queued if fleet else queue.get("length", 0),
            fleet.queue_capacity if fleet else queue.get("capacity", 0),
            server.get("version"),
            fleet.text() if fleet else None,
        )

    def _place(self) -> Place:
        """The second line: where we are and what the shown view holds."""
        view = self._deck.view
        table = self._deck.table()
        return Place(
            self._host.session.name,
            view.title,
            filter_text=view.filter_text,
            filter_error=self._filter_bar.typing_error,
            rows=(table.visible_count, table.total_count) if table is not None else None,
            marked=len(table.marked) if table is not None else 0,
            drains=self._actions.draining(),
            hint=view.header_hint(),
        )
