"""Replicas: the gateway replicas of a fleet (docs/cluster.md), each with its status, where the
others reach it, its workers, jobs and load, and when it started and was last seen.

On a single node the view says so, and how to make a fleet, rather than showing an empty
table without a word.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Static

from gatewaytui.client.store import Change, StateStore
from gatewaytui.tui.fleet import NOT_CLUSTERED, clustered, stale_status
from gatewaytui.tui.formatting import age, parse_ts, status_text
from gatewaytui.tui.screens.replica_detail import ReplicaDetailScreen
from gatewaytui.tui.views.base import register_view
from gatewaytui.tui.views.table_view import TableView, numeric_column
from gatewaytui.tui.widgets.filter_bar import FilterBar
from gatewaytui.tui.widgets.virtual_table import Column

REPLICA_ORDER = {s: i for i, s in enumerate(["gone", "degraded", "not_ready", "draining", "ready"])}


def replica_status(replica: Mapping[str, Any], styles: dict[str, str]) -> Text:
    """`● ready`; `▲ degraded` (its Redis link is down) in the draining colour."""
    status = str(replica.get("status") or "unknown")
    if status == "degraded":
        return Text("▲ degraded", styles.get("draining", "bold yellow"))
    return status_text(status, styles)


def load_ratio(replica: Mapping[str, Any]) -> float:
    """Slots in use over ready slots (how the fleet picks where to forward a request)."""
    capacity = replica.get("capacity") or 0
    return (replica.get("inflight") or 0) / capacity if capacity else 0.0


def load_text(replica: Mapping[str, Any]) -> str:
    """`12/64 19%`; `0/0` for a replica without ready slots."""
    inflight, capacity = replica.get("inflight") or 0, replica.get("capacity") or 0
    if not capacity:
        return f"{inflight}/0"
    return f"{inflight}/{capacity} {load_ratio(replica):.0%}"


def replica_id_text(replica: Mapping[str, Any]) -> Text:
    """The id; the replica the panel is connected to is marked `(here)`."""
    text = Text(str(replica.get("id", "")))
    if replica.get("local"):
        text.append(" (here)", "dim")
    return text


def _age_column(key: str, label: str, now: Any, priority: int) -> Column:
    def since(replica: Mapping[str, Any]) -> str:
        at = parse_ts(replica.get(key))
        return age(max(now() - at, 0.0)) if at else "-"

    return Column(
        key,
        label,
        since,
        sort_key=lambda r: parse_ts(r.get(key)) or 0.0,
        width=8,
        align="right",
        ticking=True,
        priority=priority,
    )


@register_view("0")
class ReplicasView(TableView):
    view_id = "replicas"
    title = "Replicas"
    collection = "replicas"
    stale_when_degraded = True
    default_sort = ("id", False)
    selectable = True  # enter: the replica in full, with its workers

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "w",
            "its_workers",
            "Workers",
            id="replicas.workers",
            tooltip="replicas: the selected replica's workers (Workers, filtered by it)",
        ),
    ]

    DEFAULT_CSS = """
    ReplicasView #replicas-note {
        height: auto; padding: 0 1; margin: 0 1;
        border: round $primary; display: none;
    }
    ReplicasView #replicas-note.-shown { display: block; }
    """

    def columns(self) -> Sequence[Column]:
        panel = self.panel
        styles = panel.status_styles
        return [
            # At 80 columns: the id, its status, where it is reached and its load; SEEN,
            # STARTED and VERSION come with the width (and are all in its details).
            Column("id", "REPLICA", replica_id_text, width=16, min_width=12),
            Column(
                "status",
                "STATUS",
                lambda r: (
                    stale_status(r.get("status"))
                    if r.get("local") is False and self.stale_shown
                    else replica_status(r, styles)
                ),
                sort_key=lambda r: REPLICA_ORDER.get(r.get("status", ""), 9),
                width=11,
            ),
            Column(
                "advertise_url",
                "ADVERTISE URL",
                lambda r: r.get("advertise_url") or "-",
                width=24,
                min_width=21,
                flex=True,
            ),
            numeric_column("workers", "WORKERS", fmt=str),
            numeric_column("jobs", "JOBS", fmt=str, width=5),
            Column(
                "load",
                "LOAD",
                load_text,
                sort_key=load_ratio,
                width=11,
                align="right",
            ),
            _age_column("started_at", "STARTED", panel.now, priority=4),
            _age_column("last_seen", "SEEN", panel.now, priority=3),
            Column("version", "VERSION", lambda r: r.get("version") or "", width=8, priority=5),
        ]

    def compose(self) -> ComposeResult:
        yield Static(id="replicas-note")
        yield from super().compose()

    def show_state(self, store: StateStore, change: Change | None) -> None:
        self._show_note(store)
        super().show_state(store, change)

    def _show_note(self, store: StateStore) -> None:
        """Not clustered: say so and how to cluster. (A degraded replica is the banner's.)"""
        note = self.query_one("#replicas-note", Static)
        single = not clustered(store)
        note.set_class(single, "-shown")
        if single and not getattr(self, "_noted", False):
            self._noted = True
            note.update(Text(NOT_CLUSTERED))

    def detail_screen(self, row_id: str) -> Screen[None] | None:
        return ReplicaDetailScreen(row_id)

    async def action_its_workers(self) -> None:
        """Workers, filtered to the replica under the cursor (`^r2$` in the filter box, so
        esc clears it as any filter)."""
        replica = self.table.cursor_id
        if replica is None:
            return
        await self.app.run_action("app.show_view('workers')")
        bar = self.app.query_one(FilterBar)
        bar.input.value = f"^{re.escape(replica)}$"  # Input.Changed applies it to Workers
        bar.show(True)
