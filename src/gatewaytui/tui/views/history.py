"""History: the ended jobs from the gateway's usage ledger, newest first.

Read over HTTP (`GET /api/history/jobs`, viewer role) when the view is shown and every few
seconds while it stays shown; `/` filters the rows, enter opens how a job ended. A snapshot
(`gatewaytui open`) shows the ended jobs it was saved with, and says so (and when it holds
none, says that instead of showing an empty table as if nothing had happened).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from rich.text import Text
from textual import work
from textual.screen import Screen

from gatewaytui.client.errors import ActionError, ClientError
from gatewaytui.client.store import Change, StateStore
from gatewaytui.schema.history import FleetCoverage, SnapshotHistory
from gatewaytui.shared.text import plural
from gatewaytui.tui.fleet import REPLICA_COLUMN, replica_column
from gatewaytui.tui.formatting import millis
from gatewaytui.tui.screens.history_detail import HistoryJobScreen
from gatewaytui.tui.views.base import register_view
from gatewaytui.tui.views.table_view import TableView
from gatewaytui.tui.widgets.virtual_table import Column

REFRESH_EVERY_S = 5
PAGE = 500
OUTCOME_STYLES = {
    "ok": "green",
    "cancelled": "yellow",
    "client_gone": "yellow",
    "bad_request": "yellow",
    "rejected": "yellow",
}


def outcome_text(outcome: str) -> Text:
    return Text(outcome, OUTCOME_STYLES.get(outcome, "bold red"))


def ended_clock(row: Mapping[str, Any]) -> str:
    ended = row.get("ended_at")
    return time.strftime("%H:%M:%S", time.gmtime(ended)) if ended else ""


def saved_clock(saved_at: float) -> str:
    """When a snapshot was saved (it may be opened days later, elsewhere: date and UTC)."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(saved_at))


def ms_column(key: str, label: str, priority: int) -> Column:
    return Column(
        key,
        label,
        lambda r: millis(r.get(key)),
        sort_key=lambda r: r.get(key) or 0,
        width=7,
        align="right",
        priority=priority,
    )


def coverage_text(answer: FleetCoverage) -> Text | None:
    """What a fleet-wide answer covers: None on a single node; a warning when a replica did
    not answer (what is shown lacks its jobs), else how many replicas' ledgers it joins."""
    if answer.partial:
        missing = ", ".join(answer.missing_replicas)
        which = "replica" if len(answer.missing_replicas) == 1 else "replicas"
        return Text(f"partial: no answer from {which} {missing} ·", "bold yellow")
    if len(answer.replicas) > 1:
        return Text(f"{plural(len(answer.replicas), 'replica')} ·", "dim")
    return None


@register_view("8")
class HistoryView(TableView):
    view_id = "history"
    title = "History"
    default_sort = ("ended", True)
    fleet_columns = frozenset({REPLICA_COLUMN})  # which replica's ledger holds the job
    selectable = True

    def __init__(self) -> None:
        super().__init__()
        self._rows: dict[str, dict[str, Any]] = {}
        self._note: Text | None = None
        self._coverage: Text | None = None  # which replicas the page covers (a fleet)
        self._since_refresh = REFRESH_EVERY_S
        self._from_snapshot = False
        self.fetched_at: float | None = None

    def columns(self) -> Sequence[Column]:
        return [
            Column(
                "ended", "ENDED", ended_clock, sort_key=lambda r: r.get("ended_at") or 0, width=8
            ),
            Column("outcome", "OUTCOME", lambda r: outcome_text(r.get("outcome", "")), width=14),
            Column("model", "MODEL", lambda r: r.get("model") or "", width=16),
            Column("key", "KEY", lambda r: r.get("key") or "-", width=12, priority=3),
            Column(
                "worker",
                "WORKER",
                lambda r: r.get("worker") or r.get("backend") or "-",
                width=12,
                priority=2,
            ),
            replica_column(priority=3),
            ms_column("queue_ms", "QUEUE", 5),
            ms_column("ttft_ms", "TTFT", 4),
            ms_column("duration_ms", "TIME", 0),
            Column(
                "tokens",
                "TOKENS",
                lambda r: f"{r.get('tokens_in') or '-'}/{r.get('tokens_out', 0)}",  # '-': unknown
                sort_key=lambda r: (r.get("tokens_in") or 0) + (r.get("tokens_out") or 0),
                width=10,
                align="right",
                priority=4,
            ),
            Column(
                "error", "ERROR", lambda r: r.get("error") or "", width=20, flex=True, priority=1
            ),
        ]

    def rows(self, store: StateStore) -> Mapping[str, Mapping[str, Any]]:
        return self._rows

    def show_state(self, store: StateStore, change: Change | None) -> None:
        self.show_fleet_columns(store)
        if change is None:  # shown again, or a new context: fresh rows now
            self.table.set_rows(self._rows)
            self.refresh_history()

    def tick(self) -> None:
        super().tick()
        self._since_refresh += 1
        live = self.panel.session.client is not None  # a snapshot's history never changes
        if live and self._since_refresh >= REFRESH_EVERY_S:
            self.refresh_history()

    def detail_screen(self, row_id: str) -> Screen[None] | None:
        row = self._rows.get(row_id)
        return HistoryJobScreen(row) if row is not None else None

    def header_hint(self) -> Text | None:
        if self._note is not None:
            return self._note
        if self.fetched_at is None:
            return Text("reading the history…", "dim")
        shown = (
            f"the last {plural(len(self._rows), 'ended job')}"
            if self._rows
            else "no ended jobs yet"
        )
        if self._from_snapshot:
            return Text(f"{shown} saved in the snapshot at {saved_clock(self.fetched_at)}", "dim")
        clock = time.strftime("%H:%M:%S", time.localtime(self.fetched_at))
        where = "the gateway's ledger" if self._coverage is None else "the fleet's ledgers"
        hint = Text(f"{shown} from {where} · read {clock}", "dim")
        return hint if self._coverage is None else Text.assemble(self._coverage, " ", hint)

    def refresh_history(self) -> None:
        self._since_refresh = 0
        session = self.panel.session
        if session.is_offline or session.client is None:
            self._show_saved(self.panel.store.saved_history)
            return
        self._fetch()

    def _show_saved(self, saved: SnapshotHistory | None) -> None:
        """The ended jobs an opened snapshot carries (it reads no ledger)."""
        self._from_snapshot = True
        if saved is None:
            self._note = Text(
                "this snapshot holds no history: open a live gateway for ended jobs", "yellow"
            )
        elif self.fetched_at != saved.saved_at:
            self._note = None
            self.fetched_at = saved.saved_at
            self._rows = {job.id: job.model_dump() for job in saved.jobs}
            self.table.set_rows(self._rows)
        self._changed()

    @work(exclusive=True, group="history")
    async def _fetch(self) -> None:
        client = self.panel.session.client
        if client is None:
            return
        try:
            page = await client.history.jobs(limit=PAGE)
        except ActionError as exc:
            self._note = Text(f"history: {exc.message}", "yellow")
        except ClientError as exc:
            self._note = Text(f"history unavailable: {exc}", "yellow")
        else:
            self._note = None
            self._from_snapshot = False
            self.fetched_at = time.time()
            self._rows = {job.id: job.model_dump() for job in page.jobs}
            self._coverage = coverage_text(page)
            self.table.set_rows(self._rows)
        self._changed()

    def _changed(self) -> None:
        from gatewaytui.tui.messages import PanelStateChanged

        self.post_message(PanelStateChanged())
