"""One replica of a fleet in full: its registration (status, advertise URL, started, last
seen, version, load) and the workers and MCP relays connected to it, followed live."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from gatewaytui.client.store import Change, StateStore
from gatewaytui.tui.bindings import DETAILS_BACK
from gatewaytui.tui.context import PanelContext, panel_of
from gatewaytui.tui.formatting import age, parse_ts, status_text
from gatewaytui.tui.widgets.footer import GatewayFooter

LISTED = 40  # ids listed per collection; the rest are counted


def _when(value: Any, now: float) -> str:
    at = parse_ts(value)
    if at is None:
        return "-"
    stamp = datetime.fromtimestamp(at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{stamp} ({age(max(now - at, 0.0))} ago)"


def _held(items: Mapping[str, Mapping[str, Any]], replica_id: str, styles: dict[str, str]) -> Text:
    """`gpu-1 ● working, gpu-2 ○ idle …` for the items whose connection this replica holds."""
    held = sorted(i for i, item in items.items() if item.get("replica") == replica_id)
    if not held:
        return Text("-")
    text = Text()
    for n, item_id in enumerate(held[:LISTED]):
        if n:
            text.append(", ")
        text.append(item_id)
        text.append(" ")
        text.append_text(status_text(items[item_id].get("status"), styles))
    if len(held) > LISTED:
        text.append(f" … and {len(held) - LISTED} more", "dim")
    return text


def describe_replica(
    replica: Mapping[str, Any], store: StateStore, now: float, styles: dict[str, str]
) -> Group:
    """The detail body; every wire string goes in as Text, never as markup."""
    replica_id = str(replica.get("id", ""))
    facts = Table.grid(padding=(0, 2))
    capacity, inflight = replica.get("capacity") or 0, replica.get("inflight") or 0
    here = " (the panel is connected to it)" if replica.get("local") else ""
    rows: list[tuple[str, str | Text]] = [
        ("replica", replica_id + here),
        ("status", status_text(str(replica.get("status") or "unknown"), styles)),
        ("advertise URL", str(replica.get("advertise_url") or "-")),
        ("started", _when(replica.get("started_at"), now)),
        ("last seen", _when(replica.get("last_seen"), now)),
        ("version", str(replica.get("version") or "-")),
        ("draining", "yes" if replica.get("draining") else "no"),
        ("jobs", f"{replica.get('jobs', 0)} in flight"),
        ("load", f"{inflight} of {capacity} ready slots in use"),
        ("workers", _held(store.workers, replica_id, styles)),
        ("MCP relays", _held(store.items["mcp_clients"], replica_id, styles)),
    ]
    for key, value in rows:
        facts.add_row(Text(key, "bold"), value if isinstance(value, Text) else Text(value))
    return Group(facts)


class ReplicaDetailScreen(ModalScreen[None]):
    """Opened with enter on the Replicas view; follows the replica until it leaves."""

    CSS_PATH = "replica_detail.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", "Back", id="replica_detail.back", tooltip=DETAILS_BACK),
    ]

    def __init__(self, replica_id: str) -> None:
        super().__init__()
        self.replica_id = replica_id
        self._last: Mapping[str, Any] | None = None

    @property
    def panel(self) -> PanelContext:
        return panel_of(self)

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(id="replica-body")
        yield GatewayFooter()

    def on_mount(self) -> None:
        self.show_state(self.panel.store, None)

    def show_state(self, store: StateStore, change: Change | None) -> None:
        replica = store.items["replicas"].get(self.replica_id)
        panel = self.panel
        if replica is None:
            gone = Text.assemble(
                "replica ", (self.replica_id, "bold"), " has left the fleet (stopped, or its "
                "registration expired)"
            )  # fmt: skip
            body: Text | Group = gone
            if self._last is not None:
                last = describe_replica(self._last, store, panel.now(), panel.status_styles)
                body = Group(gone, Text("as last seen:", "dim"), Text(), last)
        else:
            self._last = replica
            body = describe_replica(replica, store, panel.now(), panel.status_styles)
        self.query_one("#replica-body", Static).update(body)

    def tick(self) -> None:
        """Once a second: the ages."""
        self.show_state(self.panel.store, None)

    def action_close(self) -> None:
        self.dismiss(None)
