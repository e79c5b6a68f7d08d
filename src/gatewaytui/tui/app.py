"""The gatewaytui panel: a live, keyboard-first view of one gateway context at a time.

It learns about a gateway only through `gatewaytui.client` (exactly as it would over SSH from
another host). Updates arrive coalesced from the client's stream; the panel applies them at
most `refresh_rate` times a second, by diff, inside `batch_update()` (Dolphie's habit), and
redraws nothing when nothing changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from rich.color import Color as RichColor
from rich.color import ColorParseError as RichColorParseError
from rich.style import Style
from rich.text import Text
from textual import events, on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.color import Color, ColorParseError
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.containers import Container
from textual.css.query import NoMatches
from textual.notifications import SeverityLevel
from textual.widgets import ContentSwitcher, Input, TextArea

from gatewaytui.client.connection import ConnectionStatus
from gatewaytui.client.errors import ClientError
from gatewaytui.client.session import Session
from gatewaytui.client.store import Change, StateStore
from gatewaytui.schema.durations import parse_duration
from gatewaytui.tui import views as _views  # noqa: F401  (the package docstring)
from gatewaytui.tui.config import (
    ConfigError,
    ContextConfig,
    TuiConfig,
    check_keymap,
    effective_theme,
    resolve_token,
    token_source,
)
from gatewaytui.tui.formatting import STATUS_STYLES, age, parse_ts, status_text
from gatewaytui.tui.hangup import HANGUP_EXIT_CODE, resume_only_after_suspend, start_exit_watchdog
from gatewaytui.tui.screens.confirm import ConfirmScreen
from gatewaytui.tui.screens.event_detail import EventDetailScreen
from gatewaytui.tui.screens.help import HelpScreen
from gatewaytui.tui.screens.job_detail import JobDetailScreen
from gatewaytui.tui.screens.type_confirm import TypeToConfirmScreen
from gatewaytui.tui.screens.worker_detail import WorkerDetailScreen
from gatewaytui.tui.themes import (
    DEFAULT_THEME,
    load_themes,
    status_variable_defaults,
    user_themes_dir,
)
from gatewaytui.tui.views.backends import BackendsView
from gatewaytui.tui.views.base import VIEWS, View
from gatewaytui.tui.views.events import EventsView
from gatewaytui.tui.views.jobs import JobsView
from gatewaytui.tui.views.mcp import MCPView
from gatewaytui.tui.views.overview import OverviewView
from gatewaytui.tui.views.plugins import PluginsView
from gatewaytui.tui.views.workers import WorkersView
from gatewaytui.tui.widgets.banner import ConnectionBanner
from gatewaytui.tui.widgets.footer import GatewayFooter
from gatewaytui.tui.widgets.header import GatewayHeader
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
)

DEFAULT_STALE_AFTER = 15.0
# Binding ids of widgets and screens (the app's own are read from its bindings).
KNOWN_BINDING_IDS = frozenset(
    {
        "table.cursor_up", "table.cursor_down", "table.page_up", "table.page_down",
        "table.first", "table.last", "table.mark", "table.select", "table.sort",
        "table.reverse", "events.follow", "confirm.yes", "confirm.no",
        "type_confirm.cancel", "detail.back", "detail.drain", "detail.undrain", "help.close",
        "job_detail.back", "job_detail.cancel", "event_detail.back",
        "plugins.export", "export.yaml", "export.env", "export.flags", "export.all",
        "export.copy", "export.close",
        "backends.add", "backends.edit", "backends.toggle", "backends.probe", "backends.delete",
        "backend_form.cancel", "backend_form.save", "backend_form.test",
    }
)  # fmt: skip
ACTIONS = frozenset({"drain", "undrain", "cancel_job"})
ROW_ACTIONS = ACTIONS | {"details", "filter"}

log = logging.getLogger(__name__)


class GatewayCommands(Provider):
    """Command palette: server drain/undrain, contexts, themes, snapshot, pause."""

    def _commands(self) -> list[tuple[str, Any, str]]:
        app: GatewayApp = self.app  # type: ignore[assignment]
        commands: list[tuple[str, Any, str]] = []
        if app.can_act:
            commands += [
                ("Server: drain", app.action_server_drain, "stop taking requests, finish jobs"),
                ("Server: undrain", app.action_server_undrain, "cancel an unfinished drain"),
            ]
        commands.append(("Save snapshot", app.action_save_snapshot, "write the state to a file"))
        commands.append(("Pause / resume live updates", app.action_pause, "freeze the screen"))
        for context in app.config.contexts:
            if context.name != app.context_name:
                commands.append(
                    (
                        f"Context: {context.name}",
                        _bind(app.switch_context, context.name),
                        context.url,
                    )
                )
        for theme in sorted(app.gateway_themes):
            commands.append((f"Theme: {theme}", _bind(app.set_theme, theme), "colours"))
        return commands

    async def discover(self) -> Hits:
        for name, callback, help_text in self._commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, callback, help_text in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)


def _bind(fn: Any, *args: Any) -> Any:
    def call() -> None:
        fn(*args)

    return call


def worker_action_dialog(
    kind: str, worker_ids: list[str], workers: dict[str, dict[str, Any]]
) -> ConfirmScreen:
    """The drain / re-add confirmation: names every worker and its jobs in flight."""
    body = Text()
    total = 0
    for worker_id in worker_ids:
        worker = workers.get(worker_id) or {}
        inflight = worker.get("inflight", 0)
        total += inflight
        body.append("  • ")
        body.append(worker_id, "bold")
        body.append(f"  {worker.get('status', '?')}, {inflight} job(s) in flight\n")
    if kind == "drain":
        body.append(
            f"\nNo new jobs will be sent to them; the {total} in-flight job(s) finish normally."
        )
        return ConfirmScreen(f"Drain {len(worker_ids)} worker(s)?", body, "Drain")
    body.append("\nThey go back into rotation and receive new jobs.")
    return ConfirmScreen(f"Re-add {len(worker_ids)} worker(s)?", body, "Re-add")


def badge_style_for(color: str | None) -> Style:
    """The header badge of a context: bold, reversed, in the context's colour.

    The config accepts any Textual colour (`red`, `ansi_bright_red`, `#d7005f`, `rgb(1, 2, 3)`,
    `hsl(0, 100%, 50%)`), most of which Rich's style syntax cannot read; so the colour is
    parsed by Textual and handed to Rich as a colour object.
    """
    if not color:
        return Style(bold=True, reverse=True)
    try:  # Rich's own names first: `red` stays the terminal's red (16-colour themes, SSH)
        return Style(bold=True, reverse=True, color=RichColor.parse(color))
    except RichColorParseError:
        pass
    try:
        rich_color = Color.parse(color).rich_color
    except ColorParseError:  # validated by the config; a bad one just loses its colour
        return Style(bold=True, reverse=True)
    return Style(bold=True, reverse=True, color=rich_color)


class GatewayApp(App[None]):
    """One context at a time; `contexts` in the config, switchable from the palette."""

    CSS_PATH = "app.tcss"
    TITLE = "gatewaytui"
    COMMANDS: ClassVar[set[type[Provider]]] = {GatewayCommands}
    ENABLE_COMMAND_PALETTE = True

    BINDINGS: ClassVar[list[BindingType]] = [
        *(
            Binding(
                entry.key,
                f"show_view('{entry.view_id}')",
                entry.title,
                id=f"app.view_{entry.key}",
                show=False,
            )
            for entry in VIEWS
        ),
        # Priority: `/` is handled as the app reads it, so the keys of the same burst go to
        # the filter box it focuses (see action_filter), not to the table and its bindings.
        Binding("slash", "filter", "Filter", id="app.filter", priority=True),
        Binding("escape", "back", "Back", id="app.back", show=False),
        Binding("enter", "details", "Details", id="app.details"),
        Binding("d", "drain", "Drain", id="app.drain"),
        Binding("u", "undrain", "Re-add", id="app.undrain"),
        Binding("x", "cancel_job", "Cancel job", id="app.cancel_job"),
        Binding("p", "pause", "Pause", id="app.pause"),
        Binding("S", "save_snapshot", "Snapshot", id="app.save_snapshot"),
        Binding("question_mark", "help", "Help", id="app.help"),
        Binding("q", "quit", "Quit", id="app.quit"),
        Binding("r", "retry_now", "Retry now", id="app.retry_now"),
        # Textual adds its own palette binding only when the app has none, and without an id;
        # this one has an id, so `keymap: {app.command_palette: ctrl+k}` remaps it.
        Binding(
            App.COMMAND_PALETTE_BINDING,
            "command_palette",
            "palette",
            id="app.command_palette",
            show=False,
            priority=True,
            tooltip="Open the command palette",
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
        self.session = self._make_session()
        self.paused = False
        self._frozen = False
        self._serving_count = 0
        self._pending: Change | None = None
        self._role: str | None = None
        self._clock: float | None = None
        self.drain_watch: dict[str, str] = {}  # worker id -> "drain" | "undrain"
        self.gateway_themes = load_themes([user_themes_dir(config_path)])
        # The main screen's parts, held directly: a modal on top must not hide them from
        # the update paths (a query searches the active screen).
        self._header = GatewayHeader(id="header")
        self._banner = ConnectionBanner(id="banner")
        self._switcher = ContentSwitcher(id="views", initial=f"view-{VIEWS[0].view_id}")
        self._views_by_id = {f"view-{entry.view_id}": entry.factory() for entry in VIEWS}
        self._filter_bar = Container(id="filter-bar")
        self._filter_input = Input(
            placeholder="regex over all columns · enter keeps · esc clears", id="filter"
        )
        self._filter_error: str | None = None  # what is wrong with the regex being typed
        self._status_styles: dict[str, str] = dict(STATUS_STYLES)
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

    def _make_session(self) -> Session:
        """The session of `self.snapshot`, else of `self.context`.

        Raises `ConfigError` when the context's token file is missing, unreadable or empty
        (the message names the context and the file, never a token), `ClientError` (a
        `SnapshotError`) for a bad snapshot file.
        """
        if self.snapshot is not None:
            return Session.offline(self.snapshot)
        assert self.context is not None
        return self._live_session(self.context)

    def _live_session(self, context: ContextConfig) -> Session:
        return Session.live(
            context.name, context.url, resolve_token(context), **self.connection_options
        )

    @property
    def store(self) -> StateStore:
        return self.session.store

    @property
    def context_name(self) -> str:
        return self.session.name

    def compose(self) -> ComposeResult:
        yield self._header
        yield self._banner
        with self._switcher:
            yield from self._views_by_id.values()
        with self._filter_bar:
            yield self._filter_input
        yield GatewayFooter()

    def get_theme_variable_defaults(self) -> dict[str, str]:
        """`$status-*` exist under every theme, Textual's built-in ones too."""
        return status_variable_defaults(self.current_theme)

    def on_mount(self) -> None:
        self.theme_changed_signal.subscribe(self, self._on_theme_changed)
        for problem in self.gateway_themes.problems:
            self.notify(problem, title="theme skipped", severity="warning", timeout=10)
        for theme in self.gateway_themes.values():
            self.register_theme(theme)
        if self._wanted_theme in self.available_themes:
            self.theme = self._wanted_theme
        else:
            self.notify(
                f"no theme named {self._wanted_theme!r}; using {DEFAULT_THEME}",
                severity="warning",
                timeout=10,
            )
            self.theme = DEFAULT_THEME
        if self.config.keymap:
            known = {b.id for _, b in self._bindings if b.id} | KNOWN_BINDING_IDS
            for warning in check_keymap(self.config.keymap, known):
                self.notify(warning, severity="warning", timeout=10)
            self.set_keymap(dict(self.config.keymap))
            palette_keys = self.config.keymap.get("app.command_palette")
            if palette_keys:  # the footer shows the palette under its (first) key
                self.COMMAND_PALETTE_BINDING = palette_keys.split(",")[0]
        self.session.start()
        self._follow_updates()
        self.set_interval(1.0, self._tick)
        self.show_everything()
        self.current_view.focus_main()
        resume_only_after_suspend()
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._terminal_gone)

    def on_resize(self, event: events.Resize) -> None:
        """The header reflows with the width (the counts take a line of their own when narrow)."""
        self.call_after_refresh(self._update_header)

    def _terminal_gone(self) -> None:
        """SIGHUP: nobody is watching; exit, and make sure of it (see `tui.hangup`)."""
        log.info("terminal hung up; exiting")
        start_exit_watchdog()
        self.exit(return_code=HANGUP_EXIT_CODE)

    async def on_unmount(self) -> None:
        await self.session.stop()

    # ---- time, roles, theme-derived styles ------------------------------------------------

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
        if self._clock is None:
            self._clock = float(int(time.time()))
        return self._clock

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
    def status_styles(self) -> dict[str, str]:
        """Status word -> Rich style, from the theme's `$status-*` variables. One dict, updated
        in place when the theme changes: the tables' columns hold it from their compose."""
        return self._status_styles

    def _on_theme_changed(self, _theme: object) -> None:
        """After a theme is applied (its CSS variables are known only then)."""
        variables = self.theme_variables
        styles = dict(STATUS_STYLES)
        for status in STATUS_STYLES:
            value = variables.get(f"status-{status.replace('_', '-')}")
            if value:
                with contextlib.suppress(Exception):
                    styles[status] = f"bold {Color.parse(value).rich_color.name}"
        if styles == self._status_styles:
            return
        self._status_styles.clear()
        self._status_styles.update(styles)
        for view in self.views():  # their rows were drawn with the old colours
            if view.is_mounted:
                for table in view.query(VirtualTable):
                    table.restyle_rows()

    @property
    def heartbeat_stale_after(self) -> float:
        """Twice the gateway's heartbeat interval (from its plugin options), else 15 s."""
        plugin = self.store.items["plugins"].get("workers") or {}
        for arg in plugin.get("args", ()):
            if arg.get("id") == "heartbeat_interval" and arg.get("value"):
                with contextlib.suppress(ValueError):
                    return 2 * parse_duration(str(arg["value"]))
        return DEFAULT_STALE_AFTER

    def token_history(self, worker_id: str) -> list[float]:
        return list(self.query_one(WorkersView).rates.history.get(worker_id, ()))

    # ---- views ----------------------------------------------------------------------------

    @property
    def current_view(self) -> View:
        return self._views_by_id[self._switcher.current or ""]

    def views(self) -> Iterable[View]:
        return self._views_by_id.values()

    def action_show_view(self, view_id: str) -> None:
        self._switcher.current = f"view-{view_id}"
        view = self.current_view
        if view.stale:
            view.stale = False
            view.show_state(self.store, None)
        self._show_filter_bar(bool(self.current_view.filter_text))
        self.current_view.focus_main()
        self.refresh_bindings()
        self._update_header()

    def _count_workers(self) -> None:
        """Serving workers for the header: a fleet-wide scan, so once a second, not per update."""
        self._serving_count = sum(
            1
            for w in self.store.items["workers"].values()
            if w.get("status") in ("idle", "working", "connected")
        )

    def show_everything(self) -> None:
        """A full redraw from the store (start, resume, context switch)."""
        self._count_workers()
        with self.batch_update():
            for view in self.views():
                view.stale = False
                view.show_state(self.store, None)
            self._update_header()
            self._update_banner()

    # ---- live updates ---------------------------------------------------------------------

    @work(exclusive=True, group="updates")
    async def _follow_updates(self) -> None:
        """Apply coalesced updates; sleeping between them caps the redraw rate (no pile-up)."""
        interval = 1.0 / self.config.refresh_rate
        session = self.session
        async for update in session.updates():
            if session is not self.session:
                return
            if update.change is not None:
                self._pending = (
                    update.change if self._pending is None else self._pending.merge(update.change)
                )
            if update.state_changed:
                self._on_connection_change()
            if not self.paused:
                self._apply_pending()
            await asyncio.sleep(interval)

    def _apply_pending(self) -> None:
        change, self._pending = self._pending, None
        if change is None or (change.empty and not change.snapshot):
            return
        with self.batch_update():
            current = self.current_view
            for view in self.views():
                if view is current:
                    view.show_state(self.store, change)
                else:  # hidden: redraw in full when shown, keep only histories now
                    view.stale = True
                    view.observe(self.store, change)
            screen = self.screen
            if hasattr(screen, "show_state"):
                screen.show_state(self.store, change)
            self._check_drains()
            self._update_header()
        if change.snapshot and not self._frozen:
            # The first big state and its rows are long-lived: once drawn, keep the GC's
            # full passes off them (they were the tail of key-to-frame latency).
            self._frozen = True
            self.call_after_refresh(gc.freeze)

    def _tick(self) -> None:
        self._clock = float(int(time.time()))
        for view in self.views():
            view.background_tick(self.store)
        if self.paused:
            return
        self._count_workers()
        with self.batch_update(), contextlib.suppress(NoMatches):  # a tick during teardown
            self.current_view.tick()
            screen = self.screen
            if hasattr(screen, "tick") and screen is not self.screen_stack[0]:
                screen.tick()
            self._update_header()
            self._update_banner()

    def _on_connection_change(self) -> None:
        state = self.session.state
        if state.status is ConnectionStatus.LIVE and self._role is None:
            self._learn_role()
        self._update_banner()
        self._update_header()
        self.refresh_bindings()

    @work(exclusive=True, group="role")
    async def _learn_role(self) -> None:
        client = self.session.client
        if client is None:
            return
        with contextlib.suppress(Exception):
            self._role = await client.whoami()
            self.refresh_bindings()
            self._update_header()

    # ---- header and banner ----------------------------------------------------------------

    def _update_header(self) -> None:
        server = self.store.server
        badge_style = badge_style_for(self.context.color if self.context else None)
        line1 = Text()
        label = self.context.display_name if self.context and not self.snapshot else None
        line1.append(f" {label or self.context_name} ", badge_style)
        line1.append(" ")
        if self.read_only:
            line1.append("READ-ONLY", "bold")
            line1.append(" ")
        if self.paused:
            line1.append("⏸ PAUSED", "bold reverse yellow")
            line1.append(" ")
        status = server.get("status")
        if status:
            shown = status_text(status, self.status_styles)
            if self.session.state.status is ConnectionStatus.RECONNECTING:
                shown.stylize("dim")  # the last known status, not the gateway's now
            line1.append_text(shown)
            if server.get("draining"):
                started = parse_ts(server.get("drain_started_at"))
                since = f" {age(self.now() - started)}" if started else ""
                line1.append(f"{since} ({server.get('inflight', 0)} left)", "bold yellow")
            line1.append(" · ")
        width = self.size.width - 2  # the header's padding
        connection = self._connection_text()
        if 0 < width < line1.cell_len + connection.cell_len:
            connection = self._connection_text(short=True)
        line1.append_text(connection)
        workers = self.store.items["workers"]
        serving = self._serving_count
        queue = server.get("queue") or {}
        counts = Text(
            f"workers {serving}/{len(workers)} · jobs {len(self.store.items['jobs'])}"
            f" · queue {queue.get('length', 0)}/{queue.get('capacity', 0)}"
        )
        if server.get("version"):
            counts.append(f" · gateway {server['version']}", "dim")
        view = self.current_view
        line2 = Text.assemble((self.context_name, "bold"), " › ", (view.title, "bold"))
        if view.filter_text:
            line2.append("  filter ")
            line2.append(f"/{view.filter_text}/", "italic")
        if self._filter_error is not None and self.focused is self._filter_input:
            line2.append("  ✖ ", "bold red")
            line2.append(self._filter_error, "red")
        table = self._current_table()
        if table is not None:
            line2.append(f"  {table.visible_count}/{table.total_count} rows")
            if table.marked:
                line2.append(f"  {len(table.marked)} marked", "bold")
        if self.drain_watch:
            parts = []
            for worker_id, kind in sorted(self.drain_watch.items()):
                left = (workers.get(worker_id) or {}).get("inflight", 0)
                parts.append(f"{worker_id} ({left} left)" if kind == "drain" else worker_id)
            line2.append("  draining: " + ", ".join(parts), "yellow")
        hint = view.header_hint()
        if hint is not None:
            line2.append("  ")
            line2.append_text(hint)
        # One line for who and how many when it fits; else the counts get a line of their own
        # (80 columns), so the jobs, the queue and the version are never cut off.
        if width <= 0 or line1.cell_len + 3 + counts.cell_len <= width:
            self._header.show(Text.assemble(line1, " · ", counts), line2)
        else:
            self._header.show(line1, counts, line2)

    def _connection_text(self, *, short: bool = False) -> Text:
        state = self.session.state
        status = state.status
        if status is ConnectionStatus.LIVE:
            return Text("● live", "green")
        if status is ConnectionStatus.OFFLINE:  # and when it was taken (UTC, as on the wire)
            taken = parse_ts(self.store.as_of)
            when = datetime.fromtimestamp(taken, tz=UTC) if taken is not None else None
            if short:
                text = f"◆ snapshot {when:%Y-%m-%d %H:%M:%S} UTC" if when else "◆ snapshot"
            else:
                taken_at = f" taken {when:%Y-%m-%d %H:%M:%S} UTC" if when else ""
                text = f"◆ offline snapshot{taken_at}"
            return Text(text, "cyan")
        if status is ConnectionStatus.UNAUTHORIZED:
            return Text("✖ not authorized", "bold red")
        retry = state.retry_in()
        suffix = f" (retry in {retry:.0f}s)" if retry is not None else ""
        return Text(f"◌ {status.value}{suffix}", "bold yellow")

    def _update_banner(self) -> None:
        banner = self._banner
        state = self.session.state
        status = state.status
        url = self.session.url
        if status is ConnectionStatus.UNAUTHORIZED:
            banner.show_message(
                Text.assemble(
                    ("Not authorized: ", "bold"),
                    f"gateway context '{self.context_name}' ({url}) refused the token",
                    f" (HTTP {state.http_status}: {state.last_error}).\n"
                    if state.http_status
                    else f" ({state.last_error}).\n",
                    self._token_hint(),
                ),
                error=True,
            )
            return
        if status in (ConnectionStatus.CONNECTING, ConnectionStatus.RECONNECTING) and (
            state.attempt > 0 or state.last_error
        ):
            retry = state.retry_in()
            when = f"retrying in {retry:.0f}s" if retry is not None else "retrying now"
            since = datetime.fromtimestamp(state.since).strftime("%H:%M:%S")
            stale = " Showing the last known state (stale)." if self.store.has_state else ""
            banner.show_message(
                Text.assemble(
                    ("Cannot reach ", "bold"),
                    (f"'{self.context_name}'", "bold"),
                    f" at {url}: {state.last_error or 'no answer'}. ",
                    f"Unreachable since {since}; {when} (attempt {state.attempt + 1}; ",
                    ("r", "bold"),
                    f" retries now).{stale}",
                )
            )
            return
        banner.show_message(None)

    def _token_hint(self) -> Text:
        """How to fix a refused token: name the source this context actually uses."""
        source = token_source(self.context) if self.context is not None else None
        if source is None:
            env_hint = (
                f"GATEWAYTUI_{self.context_name.upper().replace('-', '_').replace('.', '_')}_TOKEN"
            )
            return Text.assemble(
                "This context has no token. Give it an operator or viewer token: in the config ",
                "file set ",
                (f"token_env: {env_hint}", "bold"),
                " (or token_file: …) under the context, then export that variable.",
            )
        kind, where, is_set = source
        if kind == "token_env" and not is_set:
            return Text.assemble(
                "The token comes from ",
                (f"${where}", "bold"),
                " (this context's token_env), which is not set: export it with an operator or "
                "viewer token of this gateway.",
            )
        what = f"${where}" if kind == "token_env" else where
        return Text.assemble(
            "Check the token in ",
            (what, "bold"),
            f" (this context's {kind}): it must be an operator or viewer token of this gateway.",
        )

    # ---- filter ---------------------------------------------------------------------------

    def _current_table(self) -> VirtualTable | None:
        try:
            return self.current_view.query_one(VirtualTable)
        except NoMatches:
            return None

    def _show_filter_bar(self, visible: bool) -> None:
        self._filter_bar.set_class(visible, "-visible")

    def action_filter(self) -> None:
        if not self.current_view.filterable:
            return
        filter_input = self._filter_input
        filter_input.value = self.current_view.filter_text
        self._show_filter_bar(True)
        # Focus now, not via `focus()` (a callback queued behind keys already received): over
        # SSH `/ready` arrives in one batch, and its `d` and `y` must be typed, not acted on.
        self.screen.set_focus(filter_input)

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        error = self.current_view.apply_filter(event.value)
        event.input.set_class(error is not None, "-invalid")
        event.input.tooltip = error
        self._filter_error = error  # shown on the header's second line while typing
        self._update_header()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        if self._filter_error is not None:
            self.notify(
                f"{self._filter_error}; the filter is unchanged", severity="warning", timeout=6
            )
            self._filter_error = None
        self._show_filter_bar(bool(self.current_view.filter_text))
        self.current_view.focus_main()
        self._update_header()

    def _reset_views(self) -> None:
        """A new context: no filter, no marks (they named rows of the old gateway)."""
        for view in self.views():
            if view.filter_text:
                view.apply_filter("")
            for table in view.query(VirtualTable):
                table.clear_marks()
        self._filter_input.value = ""
        self._show_filter_bar(False)
        self.current_view.focus_main()

    def action_back(self) -> None:
        view = self.current_view
        filter_input = self._filter_input
        table = self._current_table()
        if filter_input.has_focus or view.filter_text:
            filter_input.value = ""
            view.apply_filter("")
            self._show_filter_bar(False)
            view.focus_main()
        elif table is not None and table.marked:
            table.clear_marks()
        elif view.view_id != VIEWS[0].view_id:
            self.action_show_view(VIEWS[0].view_id)
        self._update_header()

    # ---- actions --------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Actions vanish from the footer where they do not apply (and in read-only mode)."""
        view_id = self.current_view.view_id if hasattr(self, "_views_by_id") else ""
        if action in ROW_ACTIONS and self._over_main_screen():
            return False  # a detail screen acts on its own item, never on the table behind it
        if action in ("drain", "undrain"):
            return view_id == "workers" and not self.read_only
        if action == "cancel_job":
            return view_id == "jobs" and not self.read_only
        if action == "details":
            return view_id in ("workers", "jobs", "events")
        if action == "retry_now":  # only while the gateway cannot be reached
            return self.session.state.status in (
                ConnectionStatus.RECONNECTING,
                ConnectionStatus.UNAUTHORIZED,
            )
        if action == "filter":  # `/` types itself into a text field (a URL, a regex)
            return not isinstance(self.focused, Input | TextArea)
        return True

    def action_retry_now(self) -> None:
        """Skip the reconnect backoff: try the gateway again at once."""
        self.session.retry_now()
        self.notify(f"reconnecting to {self.context_name} now", timeout=3)

    def _over_main_screen(self) -> bool:
        """A screen (details, a dialog) is on top of the views."""
        try:
            return len(self.screen_stack) > 1
        except Exception:  # no screen yet
            return False

    def _selected_workers(self) -> list[str]:
        table = self._current_table()
        if table is None:
            return []
        if table.marked:
            return sorted(table.marked)
        return [table.cursor_id] if table.cursor_id else []

    def action_details(self) -> None:
        table = self._current_table()
        if table is not None and table.cursor_id:
            self.open_details(table.cursor_id)

    def open_details(self, row_id: str) -> None:
        """Enter on a row: the worker's or the job's detail screen."""
        view_id = self.current_view.view_id
        if view_id == "workers":
            self.push_screen(WorkerDetailScreen(row_id))
        elif view_id == "jobs":
            self.push_screen(JobDetailScreen(row_id))
        elif view_id == "events":
            event = self.store_event(row_id)
            if event is not None:
                self.push_screen(EventDetailScreen(event))

    def store_event(self, row_id: str) -> dict[str, Any] | None:
        """The event of an Events row (rows are keyed by the event's id as text)."""
        return next((e for e in self.store.events if str(e.get("id")) == row_id), None)

    @on(VirtualTable.RowSelected)
    def _row_selected(self, event: VirtualTable.RowSelected) -> None:
        self.open_details(event.row_id)

    @on(VirtualTable.MarksChanged)
    def _marks_changed(self, event: VirtualTable.MarksChanged) -> None:
        self._update_header()

    def action_drain(self) -> None:
        self.request_worker_action("drain", self._selected_workers())

    def action_undrain(self) -> None:
        self.request_worker_action("undrain", self._selected_workers())

    def _refuse_read_only(self) -> bool:
        if self.read_only:
            why = "offline snapshot" if self.session.is_offline else "read-only mode"
            self.notify(f"Not allowed: this is a {why}.", severity="warning")
            return True
        if not self.session.state.live:
            self.notify(
                "Not connected to the gateway; try again when live.",
                severity="warning",
            )
            return True
        return False

    def request_worker_action(self, kind: str, worker_ids: list[str]) -> None:
        """Confirm, then drain or re-add workers; progress shows until their jobs reach zero."""
        if not worker_ids or self._refuse_read_only():
            return
        dialog = worker_action_dialog(kind, worker_ids, self.store.items["workers"])

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._run_worker_action(kind, worker_ids)

        self.push_screen(dialog, confirmed)

    @work(group="actions")
    async def _run_worker_action(self, kind: str, worker_ids: list[str]) -> None:
        call = self.session.drain_worker if kind == "drain" else self.session.undrain_worker
        done: list[str] = []
        for worker_id in worker_ids:
            try:
                result = await call(worker_id)
            except ClientError as exc:
                self.notify(f"{kind} {worker_id} refused: {exc}", severity="error", timeout=10)
                continue
            done.append(worker_id)
            if kind == "drain":
                self.drain_watch[worker_id] = "drain"
            else:
                self.drain_watch.pop(worker_id, None)
            self.notify(result.message or f"{kind} {worker_id}: ok", timeout=4)
        table = self._current_table()
        if table is not None and done:
            table.clear_marks()
        self._update_header()

    def _check_drains(self) -> None:
        """Tell the operator when a drained worker has no jobs left (its maintenance can start)."""
        workers = self.store.items["workers"]
        for worker_id in list(self.drain_watch):
            worker = workers.get(worker_id)
            if worker is None or worker.get("status") == "gone":
                self.drain_watch.pop(worker_id)
                continue
            if worker.get("draining") and worker.get("inflight", 0) == 0:
                self.drain_watch.pop(worker_id)
                self.notify(f"✓ {worker_id} drained: no jobs left", timeout=8)

    def action_cancel_job(self) -> None:
        table = self._current_table()
        if self.current_view.view_id == "jobs" and table is not None and table.cursor_id:
            self.request_cancel_job(table.cursor_id)

    def request_cancel_job(self, job_id: str) -> None:
        """Confirm (default Cancel), then ask the gateway to cancel the job."""
        if self._refuse_read_only():
            return
        job = self.store.items["jobs"].get(job_id)
        if job is None:
            self.notify(f"job {job_id} is no longer in flight", severity="warning")
            return
        started = parse_ts(job.get("started_at"))
        body = Text.assemble(
            "  job ",
            (job["id"], "bold"),
            f"  {job.get('kind')} {job.get('model')}\n",
            f"  on {job.get('worker') or job.get('backend') or '-'}, running for ",
            age(self.now() - started) if started else "-",
            f", {job.get('tokens_out', 0)} tokens out\n\n",
            "The client gets an error; the worker stops.",
        )

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._run_cancel(job["id"])

        self.push_screen(ConfirmScreen("Cancel this job?", body, "Cancel job"), confirmed)

    @work(group="actions")
    async def _run_cancel(self, job_id: str) -> None:
        try:
            result = await self.session.cancel_job(job_id)
        except ClientError as exc:
            self.notify(f"cancel {job_id} refused: {exc}", severity="error", timeout=10)
            return
        self.notify(result.message or f"job {job_id} cancelled", timeout=4)

    def action_server_drain(self) -> None:
        if self._refuse_read_only():
            return
        inflight = self.store.server.get("inflight", 0)
        body = Text(
            f"The gateway stops taking requests (/readyz 503, new requests 503) and waits for its "
            f"{inflight} in-flight job(s). Undrain cancels it while it is unfinished.\n"
        )

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._run_server("drain")

        self.push_screen(
            TypeToConfirmScreen(
                f"Drain the whole gateway '{self.context_name}'?", body, self.context_name
            ),
            confirmed,
        )

    def action_server_undrain(self) -> None:
        if self._refuse_read_only():
            return
        body = Text("The gateway accepts requests again.\n")

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._run_server("undrain")

        self.push_screen(
            TypeToConfirmScreen(f"Undrain '{self.context_name}'?", body, self.context_name),
            confirmed,
        )

    @work(group="actions")
    async def _run_server(self, kind: str) -> None:
        try:
            if kind == "drain":
                result = await self.session.drain_server()
            else:
                result = await self.session.undrain_server()
        except ClientError as exc:
            self.notify(f"server {kind} refused: {exc}", severity="error", timeout=10)
            return
        self.notify(result.message or f"server {kind}: ok", timeout=5)

    # ---- misc actions ---------------------------------------------------------------------

    def action_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused:
            self._apply_pending()
            self.show_everything()
        self._update_header()

    def action_save_snapshot(self) -> None:
        directory = self.config.snapshot_path
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path = directory / f"gatewaytui-{self.context_name}-{stamp}.json"
        try:
            saved = self.session.save_snapshot(path)
        except (OSError, ClientError) as exc:
            self.notify(f"could not save snapshot: {exc}", severity="error", timeout=10)
            return
        self.notify(f"saved {saved}", timeout=6)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def set_theme(self, name: str) -> None:
        if name in self.available_themes:
            self.theme = name
            self.show_everything()

    def switch_context(self, name: str) -> None:
        context = next((c for c in self.config.contexts if c.name == name), None)
        if context is None:
            self.notify(f"no context named {name!r}", severity="error")
            return
        self._switch_to(context)

    @work(exclusive=True, group="switch")
    async def _switch_to(self, context: ContextConfig) -> None:
        try:
            session = self._live_session(context)
        except (ConfigError, ClientError) as exc:  # e.g. its token file is missing or empty
            self.notify(
                f"{exc}\nStill on context {self.context_name!r}.",
                title=f"cannot switch to {context.name}",
                severity="error",
                timeout=15,
            )
            return
        old = self.session
        self.context = context
        self.snapshot = None
        self._role = None
        self.drain_watch.clear()
        self.session = session
        await old.stop()
        self._reset_views()
        # --theme, else the new context's theme, else the config's (not the old context's).
        wanted = effective_theme(self.config, context, self._cli_theme)
        if wanted in self.available_themes:
            self.theme = wanted
        else:
            self.notify(
                f"no theme named {wanted!r}; keeping {self.theme}",
                severity="warning",
                timeout=10,
            )
        self.session.start()
        self._follow_updates()
        self.show_everything()
        self.notify(f"context {context.name} ({context.url})", timeout=3)
