"""The panel's chrome: the header and the connection banner, and the state they draw.

Both widgets render from one reactive state object (`HeaderState`, `BannerState`) and never
read the app. `PanelChrome` composes those states from the session, the store and what the
panel shows now; the app only says when (after a draw, on a connection change, when a view,
a filter or the marks change).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from gatewaytui.client.connection import ConnectionStatus
from gatewaytui.client.session import Session
from gatewaytui.client.store import StateStore
from gatewaytui.tui.actions import PanelActions
from gatewaytui.tui.config import ContextConfig, token_source
from gatewaytui.tui.fleet import FleetCounts, fleet_counts
from gatewaytui.tui.formatting import parse_ts, serving_count
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
        self.serving = 0  # fleet-wide workers serving, counted once a second
        self.fleet: FleetCounts | None = None  # replicas and the fleet's queue, likewise

    def after_draw(self, full: bool) -> None:
        """After the views: drains that finished, the header; once a second (`full`) the
        fleet-wide count of serving workers and the banner too."""
        if full:
            self.serving = serving_count(self._host.store.workers)
            self.fleet = fleet_counts(self._host.store)
        self._actions.check_drains()  # before the header lists the drains still going
        self.update_header()
        if full:
            self.banner.state = self.banner_state()

    def update_header(self) -> None:
        self.header.state = self.header_state()

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
        status, drain = server_line(
            server,
            host.status_styles,
            reconnecting=state.status is ConnectionStatus.RECONNECTING,
            now=host.now(),
        )
        queue = server.get("queue") or {}
        fleet = self.fleet
        return HeaderState(
            badge=(context.display_name if context and not host.snapshot else None)
            or host.session.name,
            badge_color=context.color if context else None,
            read_only=host.read_only,
            paused=host.feed.paused,
            server_status=status,
            server_drain=drain,
            connection=ConnectionLine(state.status, parse_ts(store.as_of), state.retry_in()),
            counts=Counts(
                self.serving,
                len(store.workers),
                len(store.jobs),
                fleet.queued if fleet else queue.get("length", 0),
                fleet.queue_capacity if fleet else queue.get("capacity", 0),
                server.get("version"),
                fleet.text() if fleet else None,
            ),
            place=self._place(),
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
