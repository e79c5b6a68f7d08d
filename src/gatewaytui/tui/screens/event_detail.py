"""One event in full: the Events table cuts long messages (a probe error, a refusal reason)
to its MESSAGE column; enter shows all of it, with the worker and job it names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from gatewaytui.tui.bindings import DETAILS_BACK
from gatewaytui.tui.widgets.footer import GatewayFooter

LEVEL_STYLES = {"warning": "bold yellow", "error": "bold red"}


def describe_event(event: Mapping[str, Any]) -> Group:
    """The detail body; every wire string goes in as Text, never as markup."""
    level = str(event.get("level") or "info")
    facts = Table.grid(padding=(0, 2))
    for key, value in (
        ("event", f"#{event.get('n', event.get('id', ''))}"),
        ("time", str(event.get("ts") or "-")),
        ("level", Text(level, LEVEL_STYLES.get(level, ""))),
        ("kind", str(event.get("kind") or "-")),
        ("worker", str(event.get("worker_id") or "-")),
        ("job", str(event.get("job_id") or "-")),
        *((("replica", str(event["replica"])),) if event.get("replica") else ()),  # a fleet's
    ):
        facts.add_row(Text(key, "bold"), value if isinstance(value, Text) else Text(value))
    return Group(facts, Text(), Text(str(event.get("message") or "")))


class EventDetailScreen(ModalScreen[None]):
    """Opened with enter on the Events view; an event never changes, so nothing follows."""

    CSS_PATH = "event_detail.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", "Back", id="event_detail.back", tooltip=DETAILS_BACK),
    ]

    def __init__(self, event: Mapping[str, Any]) -> None:
        super().__init__()
        self.event = dict(event)

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(describe_event(self.event), id="event-body")
        yield GatewayFooter()

    def action_close(self) -> None:
        self.dismiss(None)
