"""One job in full: what, where, since when, tokens, partition progress, the client; `x`
cancels it from here."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from gatewaytui.client.errors import ClientError
from gatewaytui.client.rows import JobRow, WorkerRow
from gatewaytui.client.store import Change, StateStore
from gatewaytui.tui.bindings import DETAILS_BACK
from gatewaytui.tui.context import PanelContext, panel_of
from gatewaytui.tui.formatting import age, bar, parse_ts, status_text
from gatewaytui.tui.screens.history_detail import ended_sentence
from gatewaytui.tui.widgets.footer import GatewayFooter

STATE_STYLES = {"queued": "bold yellow", "cancelling": "bold red", "running": "bold green"}


def _kv(table: Table, key: str, value: str | Text) -> None:
    table.add_row(Text(key, "bold"), value if isinstance(value, Text) else Text(value))


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def describe_job(
    job: JobRow,
    workers: Mapping[str, WorkerRow],
    now: float,
    styles: dict[str, str],
) -> Group:
    """The detail body; every wire string goes in as Text, never as markup."""
    state = str(job.get("state") or "running")
    head = Text.assemble(
        (str(job["id"]), "bold"), "  ", Text(str(job.get("kind", ""))), "  ",
        Text(str(job.get("model", ""))), "  ", (state, STATE_STYLES.get(state, "")),
    )  # fmt: skip
    facts = Table.grid(padding=(0, 2))
    _kv(facts, "id", str(job["id"]))
    _kv(facts, "kind", str(job.get("kind") or "-"))
    _kv(facts, "model", str(job.get("model") or "-"))
    _kv(facts, "state", Text(state, STATE_STYLES.get(state, "")))
    if job.get("backend"):
        _kv(facts, "backend", str(job["backend"]))
    else:
        worker_id = job.get("worker")
        where = Text(str(worker_id) if worker_id else "- (not assigned yet)")
        worker = workers.get(worker_id or "")
        if worker is not None:
            where.append("  ")
            where.append_text(status_text(worker.get("status"), styles))
        _kv(facts, "worker", where)
        others = [w for w in job.get("workers") or () if w != worker_id]
        if others:
            _kv(facts, "also on", ", ".join(str(w) for w in others))
    if job.get("replica"):  # a fleet's: the replica running it
        _kv(facts, "replica", str(job["replica"]))
    started = parse_ts(job.get("started_at"))
    _kv(facts, "started", _utc(started) if started is not None else "-")
    _kv(facts, "elapsed", age(now - started) if started is not None else "-")
    _kv(facts, "stream", "yes" if job.get("stream") else "no")
    tokens_in = f"{job['tokens_in']:,}" if job.get("tokens_in") else "-"  # 0: not known yet
    _kv(facts, "tokens", f"{tokens_in} in / {job.get('tokens_out', 0):,} out")
    if job.get("attempt", 1) != 1:
        _kv(facts, "attempt", str(job.get("attempt")))
    partition = job.get("partition")
    if partition:
        done, total = partition.get("done_items", 0), partition.get("total_items", 0)
        _kv(
            facts,
            "partition",
            f"{bar(done, total, 20)}  {done:,}/{total:,} items\n"
            f"chunks: {partition.get('chunks_done', 0)} done, "
            f"{partition.get('chunks_inflight', 0)} in flight, "
            f"{partition.get('chunks_failed', 0)} failed",
        )
    else:
        _kv(facts, "partition", "-")
    _kv(facts, "client", str(job.get("client") or "-"))
    return Group(head, Text(), facts)


class JobDetailScreen(ModalScreen[None]):
    """Opened with enter on the Jobs view; follows the job live until it ends."""

    CSS_PATH = "job_detail.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", "Back", id="job_detail.back", tooltip=DETAILS_BACK),
        Binding(
            "x",
            "cancel_job",
            "Cancel job",
            id="job_detail.cancel",
            tooltip="job details: cancel this job",
        ),
    ]

    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id
        self._shown: tuple[Any, ...] | None = None
        # Jobs often end while their details are read: the last state seen stays on screen.
        self._last_seen: JobRow | None = None
        self._ended_at: float | None = None
        # How it ended, from the gateway's usage ledger (asked a few times: it is written
        # in batches, so the record lands a moment after the job leaves the state).
        self._ledger: dict[str, Any] | None = None
        self._ledger_tries = 0

    @property
    def panel(self) -> PanelContext:
        return panel_of(self)

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(id="job-body")
        yield GatewayFooter()

    def on_mount(self) -> None:
        self.show_state(self.panel.store, None)

    @property
    def job(self) -> JobRow | None:
        return self.panel.store.jobs.get(self.job_id)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_job":
            return self.panel.can_act and self.job is not None
        return True

    def show_state(self, store: StateStore, change: Change | None) -> None:
        if change is not None and not change.touched("jobs") and not change.touched("workers"):
            return
        job = store.jobs.get(self.job_id)
        app = self.panel
        if job is None:
            if self._ended_at is None:
                self._ended_at = app.now()
            ended = Text.assemble(
                "job ", (self.job_id, "bold"),
                " is no longer in flight (it finished, failed or was cancelled)",
            )  # fmt: skip
            self._ask_ledger()
            if self._ledger is not None:
                ended = Text.assemble("job ", (self.job_id, "bold"), " ")
                ended.append_text(ended_sentence(self._ledger))
                if self._ledger.get("error"):
                    ended.append(f"\n{self._ledger['error']}", "red")
            shown: tuple[Any, ...] = (None, self._ledger is not None)
            body: Text | Group = ended
            if self._last_seen is not None:
                last = describe_job(
                    self._last_seen, store.workers, self._ended_at, app.status_styles
                )
                body = Group(ended, Text("as last seen:", "dim"), Text(), last)
        else:
            self._last_seen, self._ended_at = job, None
            worker = store.workers.get(job.get("worker") or "")
            started = parse_ts(job.get("started_at"))
            elapsed = age(app.now() - started) if started is not None else "-"
            shown = (repr(sorted(job.items())), worker and worker.get("status"), elapsed)
            body = describe_job(job, store.workers, app.now(), app.status_styles)
        if shown != self._shown:  # an unchanged job is not redrawn
            self._shown = shown
            self.query_one("#job-body", Static).update(body)
            self.refresh_bindings()

    def _ask_ledger(self) -> None:
        session = self.panel.session
        if self._ledger is not None or self._ledger_tries >= 5 or session.client is None:
            return
        self._ledger_tries += 1
        self._fetch_ended()

    @work(exclusive=True, group="job-ledger")
    async def _fetch_ended(self) -> None:
        client = self.panel.session.client
        if client is None:
            return
        try:
            job = await client.history.job(self.job_id)
        except ClientError:
            return  # not (yet) in the ledger, or history is off: the plain words stay
        self._ledger = job.model_dump()
        self.show_state(self.panel.store, None)

    def tick(self) -> None:
        """Once a second: the elapsed time."""
        self.show_state(self.panel.store, None)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_cancel_job(self) -> None:
        self.panel.actions.request_cancel_job(self.job_id)
