"""Events: the gateway's event log, filterable, newest at the bottom, with follow mode."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen

from gatewaytui.client.store import Change, StateStore
from gatewaytui.tui.fleet import REPLICA_COLUMN, replica_column
from gatewaytui.tui.messages import PanelStateChanged
from gatewaytui.tui.screens.event_detail import EventDetailScreen
from gatewaytui.tui.views.base import register_view
from gatewaytui.tui.views.table_view import TableView
from gatewaytui.tui.widgets.virtual_table import Column, VirtualTable

LEVELS = {"info": ("·", ""), "warning": ("▲", "bold yellow"), "error": ("✖", "bold red")}


def _level(event: Mapping[str, Any]) -> Text:
    level = event.get("level", "info")
    glyph, style = LEVELS.get(level, ("?", ""))
    return Text(f"{glyph} {level}", style)


def _time(event: Mapping[str, Any]) -> str:
    ts = event.get("ts") or ""
    return ts[11:19] if len(ts) >= 19 else ts


@register_view("4")
class EventsView(TableView):
    view_id = "events"
    title = "Events"
    collection = "events"
    default_sort = ("id", False)
    fleet_columns = frozenset({REPLICA_COLUMN})
    selectable = True  # the app shows the whole event (long messages are cut in the table)

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "f",
            "toggle_follow",
            "Follow",
            id="events.follow",
            tooltip="events: follow the newest",
        ),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.follow = True
        self._rows: dict[str, dict[str, Any]] = {}

    def columns(self) -> Sequence[Column]:
        return [
            Column(
                "id",
                "#",
                lambda e: str(e.get("n", "")),
                sort_key=lambda e: e.get("n", 0),
                width=6,
                align="right",
                priority=3,
            ),
            Column("ts", "TIME", _time, width=8),
            Column("level", "LEVEL", _level, width=9),
            Column("kind", "KIND", lambda e: e.get("kind", ""), width=14),
            Column("worker", "WORKER", lambda e: e.get("worker_id") or "", width=14, priority=2),
            replica_column(priority=3),
            Column("job", "JOB", lambda e: e.get("job_id") or "", width=18, priority=4),
            Column("message", "MESSAGE", lambda e: e.get("message", ""), width=30, flex=True),
        ]

    def compose(self) -> ComposeResult:
        yield from super().compose()

    def detail_screen(self, row_id: str) -> Screen[None] | None:
        """The whole event (rows are keyed by the event's id as text)."""
        event = next((e for e in self.panel.store.events if str(e.get("id")) == row_id), None)
        return EventDetailScreen(event) if event is not None else None

    def _event_rows(self, store: StateStore) -> dict[str, dict[str, Any]]:
        return {
            str(e.get("id")): {**e, "id": str(e.get("id")), "n": e.get("id")} for e in store.events
        }

    def show_state(self, store: StateStore, change: Change | None) -> None:
        self.show_fleet_columns(store)
        if (
            change is not None
            and not change.events
            and not change.events_reset
            and not change.snapshot
        ):
            return
        previous = self._rows
        self._rows = self._event_rows(store)
        if change is None or change.snapshot or change.events_reset:
            self.table.set_rows(self._rows)
        else:
            added = self._rows.keys() - previous.keys()
            removed = previous.keys() - self._rows.keys()
            self.table.apply(self._rows, added, removed)
        if self.follow:
            self.table.move_cursor_to_end()

    @on(events.Resize)
    def _resized(self) -> None:
        """A new size (the terminal's, or the view shown for the first time) moves the
        page: while following, the newest is brought back to the bottom once laid out."""
        if self.follow:
            self.call_after_refresh(self.table.move_cursor_to_end)

    @on(VirtualTable.CursorMoved)
    def _cursor_moved(self, event: VirtualTable.CursorMoved) -> None:
        """Moving up to read stops following (so new events do not yank the cursor away);
        `f` follows again."""
        visible = self.table.visible_ids
        if event.by_user and self.follow and visible and event.row_id != visible[-1]:
            self.follow = False
            self.post_message(PanelStateChanged())

    def header_hint(self) -> Text | None:
        if self.follow:
            return Text("following the newest", "dim")
        return Text("follow off (f)", "bold yellow")

    def action_toggle_follow(self) -> None:
        self.follow = not self.follow
        self.app.notify(f"follow {'on' if self.follow else 'off'}", timeout=2)
        if self.follow:
            self.table.move_cursor_to_end()
        self.post_message(PanelStateChanged())
