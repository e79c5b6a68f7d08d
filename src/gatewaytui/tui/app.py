"""The gatewaytui panel: a live, keyboard-first view of one gateway context at a time.

It learns about a gateway only through `gatewaytui.client` (exactly as it would over SSH from
another host). Updates arrive coalesced from the client's stream; the panel applies them at
most `refresh_rate` times a second, by diff, inside `batch_update()` (Dolphie's habit), and
redraws nothing when nothing changed.

The app wires the parts together and holds the context's session; the parts live elsewhere:
the views (`views/`, shown by `ViewDeck`), the header and banner (`chrome.PanelChrome`
composes what they draw), the worker, job and server actions (`actions.PanelActions`), the
update loop (`live.LiveFeed`) and the palette (`commands`). Views and screens see the app
only as a `context.PanelContext`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any, ClassVar

from textual import events, on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.command import Provider
from textual.notifications import SeverityLevel
from textual.widgets import Input, TextArea

from gatewaytui.client.connection import ConnectionStatus
from gatewaytui.client.errors import ClientError
from gatewaytui.client.store import StateStore
from gatewaytui.tui import views as _views  # noqa: F401  (the package docstring)
from gatewaytui.tui.actions import PanelActions, selected_ids
from gatewaytui.tui.chrome import PanelChrome
from gatewaytui.tui.commands import GatewayCommands
from gatewaytui.tui.config import (
    ConfigError,
    ContextConfig,
    TuiConfig,
    effective_theme,
)
from gatewaytui.tui.context import PanelContext
from gatewaytui.tui.formatting import heartbeat_stale_after, parse_ts
from gatewaytui.tui.hangup import exit_on_hangup
from gatewaytui.tui.keys import apply_keymap
from gatewaytui.tui.live import LiveFeed
from gatewaytui.tui.messages import PanelStateChanged
from gatewaytui.tui.read_only import read_only_reason, refused_action
from gatewaytui.tui.screens.help import HelpScreen
from gatewaytui.tui.sessions import open_session
from gatewaytui.tui.themes import (
    DEFAULT_THEME,
    load_themes,
    status_variable_defaults,
    user_themes_dir,
)
from gatewaytui.tui.views.backends import BackendsView
from gatewaytui.tui.views.base import VIEWS, View
from gatewaytui.tui.views.deck import ViewDeck
from gatewaytui.tui.views.events import EventsView
from gatewaytui.tui.views.history import HistoryView
from gatewaytui.tui.views.jobs import JobsView
from gatewaytui.tui.views.mcp import MCPView
from gatewaytui.tui.views.overview import OverviewView
from gatewaytui.tui.views.plugins import PluginsView
from gatewaytui.tui.views.replicas import ReplicasView
from gatewaytui.tui.views.usage import UsageView
from gatewaytui.tui.views.workers import WorkersView
from gatewaytui.tui.widgets.filter_bar import FilterBar
from gatewaytui.tui.widgets.footer import GatewayFooter
from gatewaytui.tui.widgets.virtual_table import VirtualTable

# Importing a view registers it; this tuple keeps the imports used.
_REGISTERED = (
    OverviewView,
    WorkersView,
    JobsView,
    EventsView,
    MCPView,
    BackendsView,
    PluginsView,
    HistoryView,
    UsageView,
    ReplicasView,
)

ACTIONS = frozenset({"drain", "undrain", "cancel_job"})
BACK = "back / clear the filter"
ROW_ACTIONS = ACTIONS | {"details", "filter"}

log = logging.getLogger(__name__)


class GatewayApp(App[None]):
    """One context at a time; `contexts` in the config, switchable from the palette."""

    CSS_PATH = "app.tcss"
    TITLE = "gatewaytui"
    COMMANDS: ClassVar[set[type[Provider] | Any]] = {GatewayCommands}
    ENABLE_COMMAND_PALETTE = True

    BINDINGS: ClassVar[list[BindingType]] = [
        *(
            Binding(
                entry.key,
                f"show_view('{entry.view_id}')",
                entry.title,
                id=f"app.view_{entry.key}",
                show=False,
                tooltip=f"switch view ({', '.join(e.title for e in VIEWS)})",
            )
            for entry in VIEWS
        ),
        # Priority: `/` is handled as the app reads it, so the keys of the same burst go to
        # the filter box it focuses (see action_filter), not to the table and its bindings.
        # A binding's tooltip is what `?` says it does (bindings without one are not listed).
        Binding(
            "slash",
            "filter",
            "Filter",
            id="app.filter",
            priority=True,
            tooltip="filter rows (regex over all columns)",
        ),
        Binding("escape", "back", "Back", id="app.back", show=False, tooltip=BACK),
        Binding("enter", "details", "Details", id="app.details"),
        Binding(
            "d", "drain", "Drain", id="app.drain", tooltip="drain the selected or marked workers"
        ),
        Binding(
            "u",
            "undrain",
            "Re-add",
            id="app.undrain",
            tooltip="re-add (undrain) the selected or marked workers",
        ),
        Binding(
            "x", "cancel_job", "Cancel job", id="app.cancel_job", tooltip="cancel the selected job"
        ),
        Binding("p", "pause", "Pause", id="app.pause", tooltip="pause / resume live updates"),
        Binding(
            "S",
            "save_snapshot",
            "Snapshot",
            id="app.save_snapshot",
            tooltip="save the current state to a snapshot file",
        ),
        Binding("question_mark", "help", "Help", id="app.help", tooltip="this help"),
        Binding("q", "quit", "Quit", id="app.quit", tooltip="quit"),
        Binding(
            "r",
            "retry_now",
            "Retry now",
            id="app.retry_now",
            tooltip="reconnect now (while the gateway cannot be reached)",
        ),
        # Textual adds its own palette binding only when the app has none, and without an id;
        # this one has an id, so `keymap: {app.command_palette: ctrl+k}` remaps it.
        Binding(
            App.COMMAND_PALETTE_BINDING,
            "command_palette",
            "palette",
            id="app.command_palette",
            show=False,
            priority=True,
            tooltip="command palette: server drain, drain by label, contexts, themes",
        ),
    ]

    def __init__(
        self,
        config: TuiConfig,
        *,
        context: ContextConfig | None = None,
        snapshot: Path | None = None,
        read_only: bool = False,
        theme: str | None = None,
        connection_options: dict[str, Any] | None = None,
        config_path: Path | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.context = context
        self.snapshot = snapshot
        self.forced_read_only = read_only
        self.connection_options = connection_options or {}
        self.session = open_session(context, snapshot, self.connection_options)
        self.actions = PanelActions(self, self)
        self.drain_watch = self.actions.drain_watch  # the same dict: worker id -> drain kind
        self._role: str | None = None
        self.gateway_themes = load_themes([user_themes_dir(config_path)])
        # The main screen's parts, held directly: a modal on top must not hide them from
        # the update paths (a query searches the active screen).
        self._deck = ViewDeck()
        self._filter_bar = FilterBar(lambda: self._deck.view)
        self._filter_input = self._filter_bar.input
        self.status_styles = self._deck.status_styles  # the theme's, updated in place
        self.chrome = PanelChrome(self, self._deck, self._filter_bar, self.actions)
        self.feed = LiveFeed(
            self,
            self._deck,
            rate=config.refresh_rate,
            after_draw=self.chrome.after_draw,
            on_connection=self._on_connection_change,
        )
        self._cli_theme = theme  # an explicit --theme wins over every context's theme
        self._wanted_theme = effective_theme(config, context, theme)

    # ---- setup ----------------------------------------------------------------------------

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """Like `App.notify`, but plain text unless asked: messages carry the gateway's words
        (refusal reasons, ids, errors such as `GET [/v1/models]`), which are never markup."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    @property
    def store(self) -> StateStore:
        return self.session.store

    def compose(self) -> ComposeResult:
        yield self.chrome.header
        yield self.chrome.banner
        yield self._deck
        yield self._filter_bar
        yield GatewayFooter()

    def get_theme_variable_defaults(self) -> dict[str, str]:
        """`$status-*` exist under every theme, Textual's built-in ones too."""
        return status_variable_defaults(self.current_theme)

    def on_mount(self) -> None:

        def theme_applied(_theme: object) -> None:
            """New status colours (a theme's CSS variables are known only once applied)."""
            self._deck.restyle(self.theme_variables)
            self._update_header()

        self.theme_changed_signal.subscribe(self, theme_applied)
        for problem in self.gateway_themes.problems:
            self.notify(problem, title="theme skipped", severity="warning", timeout=10)
        for theme in self.gateway_themes.values():
            self.register_theme(theme)
        if not self.set_theme(self._wanted_theme):
            self.notify(
                f"no theme named {self._wanted_theme!r}; using {DEFAULT_THEME}",
                severity="warning",
                timeout=10,
            )
            self.theme = DEFAULT_THEME
        if self.config.keymap:
            apply_keymap(self, self.config.keymap)
        self.session.start()
        self.feed.follow(self.session)
        self.set_interval(1.0, self.feed.tick)
        self.feed.redraw()
        self.current_view.focus_main()
        exit_on_hangup(self)

    async def on_unmount(self) -> None:
        await self.session.stop()

    # ---- what views and screens read (`PanelContext`) ---------------------------------------

    def now(self) -> float:
        """Wall-clock now; for an offline snapshot, the moment it was taken (ages stay true)."""
        if self.session.is_offline:
            return parse_ts(self.store.as_of) or time.time()
        return time.time()

    def clock(self) -> float:
        """`now()` in whole seconds, advanced only by the once-a-second tick: ages shown with
        it (heartbeats) change at most once a second and all together, however often rows
        are redrawn in between."""
        if self.session.is_offline:
            return self.now()
        if self.feed.clock is None:
            self.feed.clock = float(int(time.time()))
        return self.feed.clock

    @property
    def read_only(self) -> bool:
        return (
            self.forced_read_only
            or self.session.is_offline
            or bool(self.context and self.context.read_only)
            or self._role == "viewer"
            or bool(self.store.server.get("read_only"))
        )

    @property
    def can_act(self) -> bool:
        return not self.read_only and self.session.state.live

    @property
    def heartbeat_stale_after(self) -> float:
        """Twice the gateway's heartbeat interval (from its plugin options), else 15 s."""
        return heartbeat_stale_after(self.store.items["plugins"])

    @property
    def current_view(self) -> View:
        return self._deck.view

    def set_theme(self, name: str) -> bool:
        """Apply a theme by name and redraw; False (and nothing changes) when there is none."""
        if name not in self.available_themes:
            return False
        self.theme = name
        self.feed.redraw()
        return True

    # ---- live updates ---------------------------------------------------------------------

    def _on_connection_change(self) -> None:
        """Banner, header and keys follow the connection; once live, learn our role (a
        viewer token makes the panel read-only)."""
        if not self.screen_stack:  # closing: the session's last change comes after the screens
            return
        client = self.session.client
        if self.session.state.status is ConnectionStatus.LIVE and self._role is None and client:

            async def learn_role() -> None:
                with contextlib.suppress(Exception):
                    self._role = await client.whoami()
                    self.refresh_bindings()
                    self._update_header()

            self.run_worker(learn_role(), exclusive=True, group="role")
        self.chrome.connection_changed()
        self.refresh_bindings()

    # ---- header and banner ----------------------------------------------------------------

    @on(PanelStateChanged)
    @on(VirtualTable.MarksChanged)
    def _update_header(self) -> None:
        """A view, a filter or the marks changed (and what the header says of them)."""
        self.chrome.update_header()

    # ---- navigation -----------------------------------------------------------------------

    def action_show_view(self, view_id: str) -> None:
        view = self.feed.show(view_id)
        self._filter_bar.show(bool(view.filter_text))
        view.focus_main()
        self.refresh_bindings()
        self._update_header()

    def action_filter(self) -> None:
        if self.current_view.filterable:
            self._filter_bar.open()

    def action_back(self) -> None:  # type: ignore[override]  # Textual's is async; ours is not
        view = self.current_view
        table = self._deck.table()
        if self._filter_input.has_focus or view.filter_text:
            self._filter_bar.clear()
            view.focus_main()
        elif table is not None and table.marked:
            table.clear_marks()
        elif view.view_id != VIEWS[0].view_id:
            self.action_show_view(VIEWS[0].view_id)
        self._update_header()

    def action_details(self) -> None:
        """The row under the cursor in full: a worker's, a job's, an event's detail screen."""
        self._deck.open_details()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    # ---- actions --------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Actions vanish from the footer where they do not apply (and in read-only mode)."""
        view = self.current_view if hasattr(self, "_deck") else None
        try:
            over_main = len(self.screen_stack) > 1  # a details screen or a dialog is on top
        except Exception:  # no screen yet
            over_main = False
        if action in ROW_ACTIONS and over_main:
            return False  # a detail screen acts on its own item, never on the table behind it
        if action in ACTIONS:
            return view is not None and action in view.row_actions and not self.read_only
        if action == "details":
            return view is not None and view.has_details()
        if action == "retry_now":  # only while the gateway cannot be reached
            return self.session.state.status in (
                ConnectionStatus.RECONNECTING,
                ConnectionStatus.UNAUTHORIZED,
            )
        if action == "filter":  # `/` types itself into a text field (a URL, a regex)
            return not isinstance(self.focused, Input | TextArea)
        return True

    def on_key(self, event: events.Key) -> None:
        """A key of a hidden action in read-only mode says why, in one line."""
        if self.read_only and len(self.screen_stack) == 1:
            view = self.current_view if hasattr(self, "_deck") else None
            action = refused_action(self, event.key, ACTIONS)
            if action is not None and view is not None and action in view.row_actions:
                self.notify(read_only_reason(self), severity="warning", timeout=4)

    def action_drain(self) -> None:
        table = self._deck.table()
        self.actions.request_worker_action("drain", selected_ids(table), table)

    def action_undrain(self) -> None:
        table = self._deck.table()
        self.actions.request_worker_action("undrain", selected_ids(table), table)

    def action_cancel_job(self) -> None:
        table = self._deck.table()
        if "cancel_job" in self.current_view.row_actions and table and table.cursor_id:
            self.actions.request_cancel_job(table.cursor_id)

    def action_save_snapshot(self) -> None:
        self.actions.save_snapshot(self.config.snapshot_path)

    def action_retry_now(self) -> None:
        """Skip the reconnect backoff: try the gateway again at once."""
        self.session.retry_now()
        self.notify(f"reconnecting to {self.session.name} now", timeout=3)

    def action_pause(self) -> None:
        self.feed.toggle_pause()
        self._update_header()

    # ---- contexts -------------------------------------------------------------------------

    @work(exclusive=True, group="switch")
    async def switch_context(self, name: str) -> None:
        """Follow another context of the config (from the palette)."""
        context = next((c for c in self.config.contexts if c.name == name), None)
        if context is None:
            self.notify(f"no context named {name!r}", severity="error")
            return
        try:
            session = open_session(context, None, self.connection_options)
        except (ConfigError, ClientError) as exc:  # e.g. its token file is missing or empty
            self.notify(
                f"{exc}\nStill on context {self.session.name!r}.",
                title=f"cannot switch to {context.name}",
                severity="error",
                timeout=15,
            )
            return
        old, self.session = self.session, session
        self.context, self.snapshot, self._role = context, None, None
        self.drain_watch.clear()
        await old.stop()
        self._deck.reset()  # no filter, no marks: they named rows of the old gateway
        self._filter_bar.clear()
        self.current_view.focus_main()
        # --theme, else the new context's theme, else the config's (not the old context's).
        wanted = effective_theme(self.config, context, self._cli_theme)
        if not self.set_theme(wanted):
            self.notify(
                f"no theme named {wanted!r}; keeping {self.theme}", severity="warning", timeout=10
            )
        self.session.start()
        self.feed.follow(self.session)
        self.feed.redraw()
        self.notify(f"context {context.name} ({context.url})", timeout=3)


def _provides_panel_context(app: GatewayApp) -> PanelContext:
    """Checked by mypy: the app is what views and screens expect (`PanelContext`)."""
    return app
