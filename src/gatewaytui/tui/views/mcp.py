"""MCP: relayed MCP servers (status, load, calls, errors, busiest methods), the calls in flight
with their live duration, and for the selected client its calls and per-method counts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Static

from gatewaytui.client.rows import MCPClientRow, MCPSessionRow
from gatewaytui.client.store import Change, StateStore
from gatewaytui.tui.fleet import REPLICA_COLUMN, clustered, replica_column
from gatewaytui.tui.formatting import age, count, parse_ts, status_text
from gatewaytui.tui.views.base import View, register_view
from gatewaytui.tui.views.table_view import numeric_column
from gatewaytui.tui.widgets.virtual_table import Column, VirtualTable, clean_text

STATUS_ORDER = {"not_ready": 0, "working": 1, "idle": 2, "gone": 3}
BUSIEST = 3
DETAIL_METHODS = 8
NO_RELAY_HINT = (
    "no MCP relay is connected.\n\n"
    "Next to an MCP server, run\n"
    "  gatewaytui mcp-relay --id NAME -- COMMAND\n"
    "or --url http://host:port/mcp for a Streamable HTTP server;\n"
    "MCP clients then call POST /mcp/NAME on this gateway."
)


def busiest(functions: Mapping[str, int], n: int = BUSIEST) -> list[tuple[str, int]]:
    """The `n` methods with the most calls (ties by name, so the order is stable)."""
    return sorted(functions.items(), key=lambda item: (-item[1], item[0]))[:n]


def busiest_text(client: Mapping[str, Any]) -> str:
    """The hot methods, leaving out notifications (one `initialized` per session says little;
    the detail pane still counts them)."""
    functions = client.get("functions") or {}
    top = busiest({m: n for m, n in functions.items() if not m.startswith("notifications/")})
    return " · ".join(f"{method} {count(n)}" for method, n in top) or "-"


def server_text(client: Mapping[str, Any]) -> str:
    name = client.get("server_name") or ""
    version = client.get("server_version") or ""
    return f"{name} {version}".strip() or "-"


def errors_cell(client: Mapping[str, Any]) -> Text:
    errors = int(client.get("errors") or 0)
    return Text(count(errors), "bold red" if errors else "")


def duration_ms(session: Mapping[str, Any], now: float) -> float:
    """Live duration: measured from `started_at`, so it keeps counting between updates."""
    started = parse_ts(session.get("started_at"))
    if started is None:
        return float(session.get("duration_ms") or 0)
    return max((now - started) * 1000, 0.0)


def _w(value: Any) -> str:
    """A wire string made safe to draw: control characters cannot move the cursor."""
    return clean_text(str(value))


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def duration_text(milliseconds: float) -> str:
    if milliseconds < 10_000:
        return f"{milliseconds / 1000:.1f}s"
    return age(milliseconds / 1000)


def client_detail(
    client: MCPClientRow | None,
    sessions: Sequence[MCPSessionRow],
    now: float,
    styles: dict[str, str],
    width: int = 52,
) -> Text:
    """The selected client: who its server is, per-method counts, its calls in flight.
    `width` is the space there is: the method and call columns shrink to fit it."""
    if client is None:
        return Text(NO_RELAY_HINT, "dim")
    name_width = min(max(width - 13, 12), 40)
    text = _client_head(client, styles)
    _append_liveness(text, client, now)
    _append_methods(text, client, name_width)
    _append_calls(text, client, sessions, now, name_width)
    if client.get("last_error"):
        at = parse_ts(client.get("last_error_at"))
        text.append("\n")
        text.append(f"last error{f' ({age(now - at)} ago)' if at else ''}: ", "bold red")
        text.append(_w(client["last_error"]))
    return text


def _client_head(client: MCPClientRow, styles: dict[str, str]) -> Text:
    """Id and status, then its server: name, title, transport, protocol, capabilities."""
    text = Text()
    text.append(_w(client["id"]), "bold")
    text.append("  ")
    text.append_text(status_text(client.get("status"), styles))
    if client.get("status_reason"):
        text.append("\n")
        text.append(_w(client["status_reason"]), "yellow")
    text.append("\n")
    title = client.get("server_title")
    server = server_text(client)
    text.append(_w(server) if server != "-" else "server not initialized yet")
    if title and title != client.get("server_name"):
        text.append(f' "{_w(title)}"', "italic")
    via = client.get("transport") or "?"
    protocol = client.get("protocol_version")
    text.append(_w(f" · {via}" + (f" · {protocol}" if protocol else "")), "dim")
    capabilities = client.get("capabilities") or []
    text.append("\n")
    text.append("capabilities ", "dim")
    text.append(_w(", ".join(str(c) for c in capabilities)) or "none reported")
    text.append("\n")
    return text


def _append_liveness(text: Text, client: MCPClientRow, now: float) -> None:
    """Up (or gone) since, from where, its load, refusals, whether it needs a token."""
    connected = parse_ts(client.get("connected_at"))
    if client.get("status") == "gone":
        gone = parse_ts(client.get("gone_at"))
        text.append(f"gone {age(now - gone) if gone else '?'} ago", "dim")
    else:
        text.append(f"up {age(now - connected) if connected else '?'}", "dim")
    if client.get("remote_addr"):
        text.append(f" from {_w(client['remote_addr'])}", "dim")
    limit = client.get("max_concurrency") or 0
    text.append(f" · {client.get('inflight', 0)}/{limit} in flight")
    if client.get("rejected"):
        text.append(f" · {client['rejected']} refused (limit)", "yellow")
    if client.get("token_required"):
        text.append(" · token", "dim")


def _append_methods(text: Text, client: MCPClientRow, name_width: int) -> None:
    """The busiest methods with their calls and errors."""
    functions: Mapping[str, int] = client.get("functions") or {}
    errors: Mapping[str, int] = client.get("errors_by_method") or {}
    text.append("\n\n")
    text.append(f"{'METHOD':<{name_width}}{'CALLS':>7}{'ERR':>6}\n", "bold")
    for method, calls in busiest(functions, DETAIL_METHODS):
        failed = errors.get(method, 0)
        text.append(f"{_clip(_w(method), name_width - 1):<{name_width}}{count(calls):>7}")
        text.append(f"{count(failed) if failed else '':>6}\n", "bold red" if failed else "")
    if len(functions) > DETAIL_METHODS:
        text.append(f"… {len(functions) - DETAIL_METHODS} more methods\n", "dim")
    if not functions:
        text.append("no calls yet\n", "dim")


def _append_calls(
    text: Text,
    client: MCPClientRow,
    sessions: Sequence[MCPSessionRow],
    now: float,
    name_width: int,
) -> None:
    """The client's calls in flight, oldest first."""
    mine = sorted(
        (s for s in sessions if s.get("client_id") == client["id"]),
        key=lambda s: s.get("started_at") or "",
    )
    text.append("\n")
    text.append(f"in flight ({len(mine)})\n", "bold")
    for session in mine[:DETAIL_METHODS]:
        what = _w(f"{session.get('method', '')} {session.get('target') or ''}".strip())
        text.append(f"{_clip(what, name_width + 5):<{name_width + 6}}")
        text.append(f"{duration_text(duration_ms(session, now)):>7}\n")


@register_view("5")
class MCPView(View):
    view_id = "mcp"
    title = "MCP"

    DEFAULT_CSS = """
    MCPView #mcp-clients-table { height: auto; max-height: 60%; min-height: 4; }
    MCPView #mcp-bottom { height: 1fr; min-height: 6; }
    MCPView #mcp-sessions-pane { width: 1fr; }
    MCPView #mcp-detail-pane {
        width: 52; max-width: 50%; height: 100%;
        padding: 0 1; border-left: solid $primary 40%; scrollbar-size-vertical: 1;
        &:focus { background-tint: $foreground 5%; }
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self.selected: str | None = None
        self._store: StateStore | None = None
        self._detail_shown: tuple[str, list[Any]] | None = None

    # -- layout -----------------------------------------------------------------------------

    def client_columns(self) -> Sequence[Column]:
        app = self.panel
        styles = app.status_styles
        now = app.now

        def up(client: Mapping[str, Any]) -> str:
            at = parse_ts(client.get("gone_at") or client.get("connected_at"))
            return age(now() - at) if at else "-"

        return [
            Column("id", "CLIENT", lambda c: c["id"], width=16, min_width=10),
            Column("server", "SERVER", server_text, width=20, priority=2),
            Column(
                "status",
                "STATUS",
                lambda c: status_text(c.get("status"), styles),
                sort_key=lambda c: STATUS_ORDER.get(c.get("status", ""), 9),
                width=11,
            ),
            replica_column(priority=1),
            Column(
                "inflight",
                "LOAD",
                lambda c: f"{c.get('inflight', 0)}/{c.get('max_concurrency', 0)}",
                sort_key=lambda c: c.get("inflight", 0),
                width=6,
                align="right",
            ),
            numeric_column("calls", "CALLS"),
            Column(
                "errors",
                "ERR",
                errors_cell,
                sort_key=lambda c: c.get("errors") or 0,
                width=5,
                align="right",
            ),
            Column(
                "busiest",
                "BUSIEST METHODS",
                busiest_text,
                sort_key=lambda c: max((c.get("functions") or {}).values(), default=0),
                width=28,
                flex=True,
                priority=1,
            ),
            Column("transport", "VIA", lambda c: c.get("transport") or "-", width=5, priority=4),
            Column(
                "up",
                "UP",
                up,
                sort_key=lambda c: c.get("connected_at") or "",
                width=7,
                align="right",
                ticking=True,
                priority=3,
            ),
        ]

    def session_columns(self) -> Sequence[Column]:
        now = self.panel.now
        return [
            Column("client_id", "CLIENT", lambda s: s.get("client_id", ""), width=14),
            Column("method", "METHOD", lambda s: s.get("method", ""), width=14),
            Column(
                "target",
                "TARGET",
                lambda s: s.get("target") or "",
                width=14,
                flex=True,
                priority=1,
            ),
            Column(
                "duration",
                "TIME",
                lambda s: duration_text(duration_ms(s, now())),
                sort_key=lambda s: -(parse_ts(s.get("started_at")) or 0),
                width=6,
                align="right",
                ticking=True,
            ),
            Column("id", "CALL", lambda s: s["id"], width=18, priority=3),
        ]

    def compose(self) -> ComposeResult:
        yield Static("MCP clients", classes="panel-title", id="mcp-clients-title")
        clients = VirtualTable(
            self.client_columns(),
            empty_text="no MCP relay connected",
            id="mcp-clients-table",
            markable=False,
            selectable=False,  # the detail pane already follows the cursor
        )
        clients.sort_by("id")
        yield clients
        with Horizontal(id="mcp-bottom"):
            with Vertical(id="mcp-sessions-pane"):
                yield Static("calls in flight", classes="panel-title", id="mcp-sessions-title")
                sessions = VirtualTable(
                    self.session_columns(),
                    empty_text="no MCP call in flight",
                    id="mcp-sessions-table",
                    markable=False,
                    selectable=False,
                )
                sessions.sort_by("duration", True)
                yield sessions
            with VerticalScroll(id="mcp-detail-pane"):  # tab to it, then arrows scroll
                yield Static(id="mcp-detail")

    @property
    def clients_table(self) -> VirtualTable:
        return self.query_one("#mcp-clients-table", VirtualTable)

    @property
    def sessions_table(self) -> VirtualTable:
        return self.query_one("#mcp-sessions-table", VirtualTable)

    # -- data -------------------------------------------------------------------------------

    def show_state(self, store: StateStore, change: Change | None) -> None:
        self._store = store
        self.clients_table.hide_columns(() if clustered(store) else (REPLICA_COLUMN,))
        touched = False
        for name, table in (
            ("mcp_clients", self.clients_table),
            ("mcp_sessions", self.sessions_table),
        ):
            rows = store.items[name]
            if change is None or change.snapshot:
                table.set_rows(rows)
                touched = True
            elif change.touched(name):
                changed = set(change.added.get(name, ())) | set(change.changed.get(name, ()))
                table.apply(rows, changed, change.removed.get(name, ()))
                touched = True
        if touched:
            self._show_titles(store)
            self._show_detail()

    def _show_titles(self, store: StateStore) -> None:
        clients = store.mcp_clients
        working = sum(1 for c in clients.values() if c.get("status") != "gone")
        self.query_one("#mcp-clients-title", Static).update(
            f"MCP clients  {working} connected, {len(clients) - working} gone"
        )
        self.query_one("#mcp-sessions-title", Static).update(
            f"calls in flight  {len(store.items['mcp_sessions'])}"
        )

    def _show_detail(self) -> None:
        if self._store is None:
            return
        clients = self._store.mcp_clients
        if self.selected not in clients:
            self.selected = self.clients_table.cursor_id
        client = clients.get(self.selected or "")
        sessions = list(self._store.mcp_sessions.values())
        detail = self.query_one("#mcp-detail", Static)
        pane_width = self.query_one("#mcp-detail-pane").content_size.width
        width = pane_width - 1 if pane_width else 50  # room for the scrollbar
        app = self.panel
        text = client_detail(client, sessions, app.now(), app.status_styles, width)
        shown = (text.plain, list(text.spans))
        if shown != self._detail_shown:  # an idle view redraws nothing
            self._detail_shown = shown
            detail.update(text)

    def on_resize(self, event: events.Resize) -> None:
        self.call_after_refresh(self._show_detail)  # the detail's columns follow its width

    @on(VirtualTable.CursorMoved, "#mcp-clients-table")
    def _client_moved(self, event: VirtualTable.CursorMoved) -> None:
        self.selected = event.row_id
        self._show_detail()

    @on(VirtualTable.CursorMoved, "#mcp-sessions-table")
    def _session_moved(self, event: VirtualTable.CursorMoved) -> None:
        if self.sessions_table.has_focus:  # not when rows arrive while the clients have it
            self._follow_session(event.row_id)

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        table = self.sessions_table
        if event.widget is table:
            self._follow_session(table.cursor_id)
        elif event.widget is self.clients_table:
            self.selected = self.clients_table.cursor_id
            self._show_detail()

    def _follow_session(self, session_id: str | None) -> None:
        """The detail shows the client of the call under the cursor."""
        row = self.sessions_table.get_row(session_id) if session_id else None
        if row is not None:
            self.selected = row.get("client_id")
            self._show_detail()

    @on(VirtualTable.RowSelected)
    def _row_selected(self, event: VirtualTable.RowSelected) -> None:
        event.stop()  # enter: nothing to open beyond the detail pane, which already follows

    # -- view protocol ----------------------------------------------------------------------

    def tick(self) -> None:
        self.clients_table.tick()
        self.sessions_table.tick()
        self._show_detail()

    def apply_filter(self, pattern: str) -> str | None:
        """The regex filters both tables (a client id shows its client and its calls)."""
        error = self.clients_table.set_filter(pattern or None)
        if error is None:
            self.sessions_table.set_filter(pattern or None)
            self.filter_text = pattern
        return error

    def focus_main(self) -> None:
        self.clients_table.focus()
