"""Jobs: what is in flight right now, with elapsed time, tokens and partition progress."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.text import Text
from textual.screen import Screen

from gatewaytui.tui.fleet import REPLICA_COLUMN, replica_column
from gatewaytui.tui.formatting import age, bar, parse_ts, prompt_tokens
from gatewaytui.tui.screens.job_detail import JobDetailScreen
from gatewaytui.tui.views.base import register_view
from gatewaytui.tui.views.table_view import TableView, numeric_column
from gatewaytui.tui.widgets.virtual_table import Column


def _progress(job: Mapping[str, Any]) -> str:
    partition = job.get("partition")
    if not partition:
        return ""
    return bar(partition.get("done_items", 0), partition.get("total_items", 0), 8)


def _where(job: Mapping[str, Any]) -> str:
    if job.get("backend"):
        return f"backend:{job['backend']}"
    workers = job.get("workers") or []
    if len(workers) > 1:
        return f"{job.get('worker') or workers[-1]} +{len(workers) - 1}"
    if job.get("worker"):
        return str(job["worker"])
    return "(queued)" if job.get("state") == "queued" else "-"  # STATE is gone at 80 columns


def _state(job: Mapping[str, Any]) -> Text:
    state = job.get("state", "running")
    style = {"queued": "yellow", "cancelling": "bold red"}.get(state, "")
    return Text(state, style)


@register_view("3")
class JobsView(TableView):
    view_id = "jobs"
    title = "Jobs"
    collection = "jobs"
    default_sort = ("elapsed", True)
    fleet_columns = frozenset({REPLICA_COLUMN})
    selectable = True  # the app opens the job's details
    row_actions = frozenset({"cancel_job"})

    def detail_screen(self, row_id: str) -> Screen[None]:
        return JobDetailScreen(row_id)

    def columns(self) -> Sequence[Column]:
        now = self.panel.now

        def elapsed(job: Mapping[str, Any]) -> str:
            started = parse_ts(job.get("started_at"))
            return age(now() - started) if started else "-"

        return [
            Column("id", "JOB", lambda j: j["id"], width=18, min_width=12),
            # KIND is in every job id too (chat-…, emb-…): it gives way to STATE and WORKER.
            Column("kind", "KIND", lambda j: j.get("kind", ""), width=10, priority=2),
            Column("model", "MODEL", lambda j: j.get("model", ""), width=20, flex=True),
            Column("worker", "WORKER", _where, width=16, priority=1),
            replica_column(priority=1),
            Column("state", "STATE", _state, width=10, priority=1),
            Column(
                "elapsed",
                "ELAPSED",
                elapsed,
                sort_key=lambda j: -(parse_ts(j.get("started_at")) or 0),
                width=8,
                align="right",
                ticking=True,
            ),
            numeric_column("tokens_in", "TOK IN", fmt=prompt_tokens, priority=3),
            numeric_column("tokens_out", "TOK OUT"),
            Column(
                "stream",
                "STREAM",
                lambda j: "yes" if j.get("stream") else "no",
                width=6,
                priority=3,
            ),
            Column(
                "progress",
                "PROGRESS",
                _progress,
                sort_key=lambda j: (j.get("partition") or {}).get("done_items", -1),
                width=14,
                priority=1,
            ),
            Column("client", "CLIENT", lambda j: j.get("client") or "-", width=21, priority=4),
        ]
