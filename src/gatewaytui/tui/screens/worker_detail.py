"""One worker in full: host, labels, counters per model, last error, drain state, its jobs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Sparkline, Static

from gatewaytui.client.rows import JobRow, WorkerRow
from gatewaytui.client.store import Change, StateStore
from gatewaytui.shared.text import plural
from gatewaytui.tui.bindings import DETAILS_BACK
from gatewaytui.tui.context import PanelContext, panel_of
from gatewaytui.tui.formatting import age, count, ms, parse_ts, status_text
from gatewaytui.tui.gpus import gpu_table
from gatewaytui.tui.screens.worker_logs import LOGS_HELP, WorkerLogsScreen
from gatewaytui.tui.widgets.footer import GatewayFooter


def _kv(table: Table, key: str, value: str | Text) -> None:
    table.add_row(Text(key, "bold"), value if isinstance(value, Text) else Text(value))


def describe_worker(
    worker: WorkerRow,
    jobs: Sequence[JobRow],
    now: float,
    styles: dict[str, str],
) -> Group:
    """The detail body; every wire string goes in as Text, never as markup."""
    head = Text.assemble(
        (worker["id"], "bold"), "  ", Text(worker.get("name", "")), "  ",
        status_text(worker.get("status"), styles),
    )  # fmt: skip
    if worker.get("status_reason"):
        head.append(f"  ({worker['status_reason']})", "italic")
    parts: list[RenderableType] = [head, Text(), _facts(worker, now), Text()]
    gpus = gpu_table(worker.get("gpus"))
    if gpus is not None:
        parts += [gpus, Text()]
    return Group(*parts, _per_model(worker), Text(), _jobs_in_flight(jobs, now))


def _facts(worker: WorkerRow, now: float) -> Table:
    """Host, machine, connection, heartbeat, labels, models, load, totals."""
    facts = Table.grid(padding=(0, 2))
    host = worker.get("host") or {}
    _kv(facts, "host", f"{host.get('hostname', '-')}  {host.get('os', '')}/{host.get('arch', '')}")
    _kv(
        facts,
        "machine",
        f"cpu {host.get('cpu_count', '-')}  mem {count((host.get('mem_total_mb') or 0) * 1e6)}B"
        f"  gpu {host.get('gpu') or '-'}  python {host.get('python') or '-'}",
    )
    _kv(facts, "remote", worker.get("remote_addr") or "-")
    if worker.get("replica"):  # a fleet's: the replica holding its connection
        _kv(facts, "replica", str(worker["replica"]))
    _kv(facts, "version", worker.get("version") or "-")
    _kv(facts, "connected", f"{age(now - (parse_ts(worker.get('connected_at')) or now))} ago")
    beat = age(now - (parse_ts(worker.get("last_heartbeat")) or now))
    cpu, mem = worker.get("cpu_percent"), worker.get("mem_percent")
    _kv(facts, "heartbeat", f"{beat} ago  cpu {cpu if cpu is not None else '-'}%  "
        f"mem {mem if mem is not None else '-'}%")  # fmt: skip
    labels = worker.get("labels") or {}
    _kv(facts, "labels", "  ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-")
    _kv(facts, "models", ", ".join(worker.get("models") or []) or "-")
    _kv(facts, "load", f"{worker.get('inflight', 0)}/{worker.get('max_concurrency', 0)} in flight,"
        f" batch {worker.get('preferred_batch_size', '-')}")  # fmt: skip
    _kv(
        facts,
        "totals",
        f"processed {worker.get('processed', 0)}  failures {worker.get('failures', 0)}  "
        f"tokens {count(worker.get('tokens_in'))} in / {count(worker.get('tokens_out'))} out  "
        f"embeddings {count(worker.get('embeddings'))}  avg {ms(worker.get('avg_processing_ms'))}"
        f"  reconnects {worker.get('reconnects', 0)}",
    )
    _drain_and_error(facts, worker, now)
    return facts


def _drain_and_error(facts: Table, worker: WorkerRow, now: float) -> None:
    """The drain's progress and the last error, when there are."""
    if worker.get("draining"):
        started = parse_ts(worker.get("drain_started_at"))
        since = f"since {age(now - started)} ago, " if started else ""
        left = worker.get("inflight", 0)
        _kv(
            facts,
            "drain",
            Text(
                f"draining {since}{plural(left, 'job')} left" if left else f"drained {since}idle",
                "bold yellow",
            ),
        )
    if worker.get("last_error"):
        when = parse_ts(worker.get("last_error_at"))
        _kv(facts, "last error", Text.assemble(
            (f"{age(now - when)} ago: " if when else "", "dim"), (str(worker["last_error"]), "red")
        ))  # fmt: skip


def _per_model(worker: WorkerRow) -> Table:
    per_model = Table(title="per model", title_justify="left", expand=False, box=None)
    for column in ("model", "requests", "failures", "tokens in", "tokens out", "embeddings"):
        per_model.add_column(column, justify="left" if column == "model" else "right")
    for name, m in sorted((worker.get("per_model") or {}).items()):
        per_model.add_row(
            Text(name), str(m.get("requests", 0)), str(m.get("failures", 0)),
            count(m.get("tokens_in")), count(m.get("tokens_out")), count(m.get("embeddings")),
        )  # fmt: skip
    return per_model


def _jobs_in_flight(jobs: Sequence[JobRow], now: float) -> Table:
    job_table = Table(title=f"jobs in flight ({len(jobs)})", title_justify="left", box=None)
    for column in ("job", "kind", "model", "elapsed", "tokens out"):
        job_table.add_column(column)
    for job in jobs[:20]:
        started = parse_ts(job.get("started_at")) or now
        job_table.add_row(
            Text(job["id"]), job.get("kind", ""), Text(job.get("model", "")),
            age(now - started), count(job.get("tokens_out")),
        )  # fmt: skip
    return job_table


class WorkerDetailScreen(ModalScreen[None]):
    CSS_PATH = "worker_detail.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", "Back", id="detail.back", tooltip=DETAILS_BACK),
        Binding("d", "drain", "Drain", id="detail.drain"),
        Binding("u", "undrain", "Re-add", id="detail.undrain"),
        Binding("l", "logs", "Logs", id="detail.logs", tooltip=LOGS_HELP),
    ]

    def __init__(
        self, worker_id: str, token_history: Callable[[], Sequence[float]] = tuple
    ) -> None:
        """`token_history` gives the worker's recent tokens/s samples (the workers view keeps
        them) for the sparkline."""
        super().__init__()
        self.worker_id = worker_id
        self._token_history = token_history

    @property
    def panel(self) -> PanelContext:
        return panel_of(self)

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(id="detail-body")
            yield Static("tokens/s", classes="panel-title")
            yield Sparkline([0], id="detail-spark")
        yield GatewayFooter()

    def on_mount(self) -> None:
        self.show_state(self.panel.store, None)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("drain", "undrain"):
            return self.panel.can_act
        return True

    def show_state(self, store: StateStore, change: Change | None) -> None:
        if change is not None and not change.touched("workers") and not change.touched("jobs"):
            return
        worker = store.workers.get(self.worker_id)
        body = self.query_one("#detail-body", Static)
        if worker is None:
            body.update(Text(f"worker {self.worker_id} is no longer known to the gateway", "bold"))
            return
        jobs = [
            j
            for j in store.jobs.values()
            if j.get("worker") == self.worker_id or self.worker_id in (j.get("workers") or ())
        ]
        app = self.panel
        body.update(describe_worker(worker, jobs, app.now(), app.status_styles))
        history = list(self._token_history())
        if history:
            self.query_one("#detail-spark", Sparkline).data = history

    def tick(self) -> None:
        self.show_state(self.panel.store, None)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_logs(self) -> None:
        self.app.push_screen(WorkerLogsScreen(self.worker_id))

    def action_drain(self) -> None:
        self.panel.actions.request_worker_action("drain", [self.worker_id])

    def action_undrain(self) -> None:
        self.panel.actions.request_worker_action("undrain", [self.worker_id])
