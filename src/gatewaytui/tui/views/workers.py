"""Workers: every worker with a trustworthy status, load, tokens, latency and heartbeat age."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Literal

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.screen import Screen

from gatewaytui.client.store import Change, StateStore
from gatewaytui.tui.context import PanelContext
from gatewaytui.tui.fleet import (
    REPLICA_COLUMN,
    replica_column,
    stale_elsewhere,
    stale_status,
)
from gatewaytui.tui.formatting import STATUS_ORDER, age, coarse_age, ms, parse_ts, status_text
from gatewaytui.tui.gpus import gpu_mem_text, gpu_totals, gpu_util_text
from gatewaytui.tui.screens.label_select import open_label_select
from gatewaytui.tui.screens.worker_detail import WorkerDetailScreen
from gatewaytui.tui.screens.worker_logs import LOGS_HELP, WorkerLogsScreen
from gatewaytui.tui.views.base import register_view
from gatewaytui.tui.views.table_view import TableView, numeric_column
from gatewaytui.tui.widgets.virtual_table import Column

RATE_WINDOW_S = 10.0
BY_LABEL_HELP = "Workers: drain / re-add every worker matching a label selector"
HISTORY = 60


class TokenRates:
    """Tokens/s per worker over a sliding window of its `tokens_out` counter.

    Counters move in steps (a job's tokens land when it ends), so an instant rate would
    spike; the window averages those steps the way an operator reads throughput.
    """

    def __init__(self, window: float = RATE_WINDOW_S) -> None:
        self.window = window
        self._samples: dict[str, deque[tuple[float, float]]] = {}
        self.history: dict[str, deque[float]] = {}

    def observe(self, worker_id: str, tokens_out: float, now: float) -> None:
        samples = self._samples.setdefault(worker_id, deque())
        if samples and tokens_out == samples[-1][1]:
            return  # nothing new: the window's first sample already anchors the decay
        if samples and tokens_out < samples[-1][1]:
            samples.clear()  # the counter went backwards: a new worker under the same id
        samples.append((now, tokens_out))
        while len(samples) > 1 and now - samples[1][0] >= self.window:
            samples.popleft()  # keep one sample from before the window: it anchors the rate
        self.history.setdefault(worker_id, deque(maxlen=HISTORY)).append(
            self.current(worker_id, now)
        )

    def current(self, worker_id: str, now: float) -> float:
        samples = self._samples.get(worker_id)
        if not samples:
            return 0.0
        first_t, first_tokens = samples[0]
        if now - samples[-1][0] > self.window:  # no tokens for a whole window: not producing
            return 0.0
        return (samples[-1][1] - first_tokens) / max(now - first_t, 1.0)

    def forget(self, worker_id: str) -> None:
        self._samples.pop(worker_id, None)
        self.history.pop(worker_id, None)


def _identity_columns(panel: PanelContext) -> list[Column]:
    """Who the worker is: id, name, status (`? working` when its replica cannot be heard),
    models."""
    styles = panel.status_styles

    def status(w: Mapping[str, Any]) -> Text:
        if stale_elsewhere(panel.store.server, w):
            return stale_status(w.get("status"))
        return status_text(w.get("status"), styles)

    return [
        Column("id", "ID", lambda w: w["id"], width=16, min_width=10),
        Column("name", "NAME", lambda w: w.get("name", ""), width=14, priority=3),
        Column(
            "status",
            "STATUS",
            status,
            sort_key=lambda w: STATUS_ORDER.get(w.get("status", ""), 99),
            width=14,  # `⊘ unresponsive`
        ),
        replica_column(priority=1),
        Column(
            "models",
            "MODELS",
            lambda w: ",".join(w.get("models", ())),
            width=20,
            flex=True,
            priority=2,
        ),
    ]


def _gpu_columns() -> list[Column]:
    """Mean GPU utilisation and GPU memory used/total; `-` (sorting last) without GPU stats."""
    return [
        Column(
            "gpu_util",
            "GPU%",
            lambda w: gpu_util_text(w.get("gpus")),
            sort_key=lambda w: gpu_totals(w.get("gpus"))[0],
            width=5,
            align="right",
            priority=3,
        ),
        Column(
            "gpu_mem",
            "GPU MEM",
            lambda w: gpu_mem_text(w.get("gpus")),
            sort_key=lambda w: gpu_totals(w.get("gpus"))[1],
            width=9,
            align="right",
            priority=2,
        ),
    ]


def _heartbeat_column(panel: PanelContext) -> Column:
    now, clock = panel.now, panel.clock

    def heartbeat(w: Mapping[str, Any]) -> Text:
        """The heartbeat's age in whole seconds (`3s`, `1m20s`), ticking once a second
        with the app's clock; bold red once it is stale."""
        if w.get("status") == "gone":
            gone = now() - (parse_ts(w.get("gone_at")) or now())
            return Text("gone " + coarse_age(gone), "dim")
        tick = clock()
        seconds = tick - (parse_ts(w.get("last_heartbeat")) or tick)
        if seconds <= panel.heartbeat_stale_after:
            return Text(age(seconds))
        return Text(age(seconds), "bold red")

    return Column(
        "heartbeat",
        "BEAT",
        heartbeat,
        sort_key=lambda w: w.get("last_heartbeat") or "",
        # "gone 3h12m" is 10 cells: at 8 it filled the cell and read as one word with the
        # right-aligned GPU MEM before it ("152/160G gone 47s"); the spare cell keeps a gap.
        width=11,
        min_width=9,
        align="right",
        ticking=True,
    )


@register_view("2")
class WorkersView(TableView):
    view_id = "workers"
    title = "Workers"
    collection = "workers"
    stale_when_degraded = True
    default_sort = ("id", False)
    fleet_columns = frozenset({REPLICA_COLUMN})
    markable = True  # d / u act on every marked worker
    selectable = True  # the app opens the worker's details
    row_actions = frozenset({"drain", "undrain"})

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("l", "logs", "Logs", id="workers.logs", tooltip=LOGS_HELP),
        Binding(
            "D",
            "by_label('drain')",
            "Drain by label",
            id="workers.drain_by_label",
            show=False,
            tooltip=BY_LABEL_HELP,
        ),
        Binding(
            "U",
            "by_label('undrain')",
            "Re-add by label",
            id="workers.undrain_by_label",
            show=False,
            tooltip=BY_LABEL_HELP,
        ),
    ]

    def action_by_label(self, kind: Literal["drain", "undrain"]) -> None:
        """Every worker matching a label selector, shown before the confirmation."""
        open_label_select(self.app, kind)

    def action_logs(self) -> None:
        """The worker's own log lines, live (the worker sends them only while shown)."""
        worker_id = self.table.cursor_id
        if worker_id is not None:
            self.app.push_screen(WorkerLogsScreen(worker_id))

    def detail_screen(self, row_id: str) -> Screen[None]:
        return WorkerDetailScreen(row_id, lambda: self.rates.history.get(row_id, ()))

    def __init__(self) -> None:
        super().__init__()
        self.rates = TokenRates()

    def columns(self) -> Sequence[Column]:
        panel = self.panel
        return [
            *_identity_columns(panel),
            *self._load_columns(),
            *_gpu_columns(),
            _heartbeat_column(panel),
            Column("version", "VERSION", lambda w: w.get("version", ""), width=8, priority=5),
        ]

    def _load_columns(self) -> list[Column]:
        """In flight, tokens, the token rate (from `rates`), latency, failures."""

        def rate(w: Mapping[str, Any]) -> str:
            value = self.rates.current(w["id"], time.monotonic())
            return f"{value:.1f}" if value else "-"

        return [
            Column(
                "inflight",
                "LOAD",
                lambda w: f"{w.get('inflight', 0)}/{w.get('max_concurrency', 0)}",
                sort_key=lambda w: (w.get("inflight", 0), w.get("max_concurrency", 0)),
                width=6,
                align="right",
            ),
            numeric_column("tokens_in", "TOK IN", priority=4),
            numeric_column("tokens_out", "TOK OUT", priority=1),
            Column(
                "rate",
                "TOK/S",
                rate,
                sort_key=lambda w: self.rates.current(w["id"], time.monotonic()),
                width=6,
                align="right",
                ticking=True,
                priority=2,
            ),
            numeric_column("avg_processing_ms", "AVG", fmt=ms, priority=3),
            numeric_column("failures", "FAIL", fmt=str, width=5, priority=1),
        ]

    def observe(self, store: StateStore, change: Change | None) -> None:
        now = time.monotonic()
        workers = store.workers
        ids: Iterable[str]
        if change is None or change.snapshot:
            ids = workers.keys()
        else:
            ids = set(change.added.get("workers", ())) | set(change.changed.get("workers", ()))
            for gone in change.removed.get("workers", ()):
                self.rates.forget(gone)
        for worker_id in ids:
            worker = workers.get(worker_id)
            if worker is not None:
                self.rates.observe(worker_id, worker.get("tokens_out", 0), now)

    def show_state(self, store: StateStore, change: Change | None) -> None:
        self.observe(store, change)
        super().show_state(store, change)
