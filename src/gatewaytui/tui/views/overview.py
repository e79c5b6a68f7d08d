"""Overview: capacity per model, throughput sparklines, workers by status, and alerts."""

from __future__ import annotations

import itertools
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Sparkline, Static

from gatewaytui.client.connection import ConnectionStatus
from gatewaytui.client.errors import ClientError
from gatewaytui.client.rows import BackendRow, WorkerRow
from gatewaytui.client.store import Change, StateStore
from gatewaytui.shared.text import plural
from gatewaytui.tui.failure_rate import FailureRate, FailureRates
from gatewaytui.tui.formatting import STATUS_GLYPHS, age, bar, count, parse_ts, status_text
from gatewaytui.tui.views.base import register_view
from gatewaytui.tui.views.table_view import TableView
from gatewaytui.tui.widgets.virtual_table import Column

COUNTED_STATUSES = ("working", "idle", "connected", "draining", "not_ready", "unresponsive", "gone")
SAMPLES = 300  # 5 minutes at one sample a second
QUEUE_GROWTH_SAMPLES = 10


class Throughput:
    """Requests/s and tokens/s from the server's running totals, one sample a second."""

    def __init__(self) -> None:
        self.requests: deque[float] = deque(maxlen=SAMPLES)
        self.tokens: deque[float] = deque(maxlen=SAMPLES)
        self.queue: deque[int] = deque(maxlen=SAMPLES)
        self._last: tuple[float, int, int] | None = None

    def sample(self, server: Mapping[str, Any], now: float) -> None:
        requests = int(server.get("requests_total", 0))
        tokens = int(server.get("tokens_out_total", 0))
        self.queue.append(int((server.get("queue") or {}).get("length", 0)))
        if self._last is not None:
            then, r0, t0 = self._last
            span = max(now - then, 1e-3)
            self.requests.append(max(requests - r0, 0) / span)
            self.tokens.append(max(tokens - t0, 0) / span)
        self._last = (now, requests, tokens)

    def forget_last(self) -> None:
        """No rate across a gap (the gateway unreachable): the next sample starts afresh."""
        self._last = None

    def seed(
        self,
        points: Sequence[tuple[float, float, float]],
        now: float,
        since: float | None = None,
    ) -> None:
        """Fill the samples not taken yet from the ledger's per-minute points
        `(minute start, requests, tokens out)`: a panel opened now shows the last minutes,
        not zeros. Each second of a minute gets that minute's rate over the part of it the
        ledger saw (the current minute so far; a ledger started mid-minute from `since`),
        so 10 requests in the 20 s since the ledger started read 0.5/s, not 10/60."""
        missing = SAMPLES - len(self.requests)
        if missing <= 0:
            return
        seconds = [now - back - len(self.requests) for back in range(missing, 0, -1)]
        minute_of = [int(second // 60 * 60) for second in seconds]
        recorded = [since is None or second >= since for second in seconds]
        filled = Counter(m for m, seen in zip(minute_of, recorded, strict=True) if seen)
        per_minute = {}
        for t, r, k in points:
            seen = min(t + 60.0, now) - max(t, since if since is not None else t)
            # never spread a minute over fewer seconds than are filled from it: the seeded
            # seconds of a minute add up to at most its count
            seen = max(seen, float(filled.get(int(t), 0)), 1.0)
            per_minute[int(t)] = (r / seen, k / seen)
        seeded_r: list[float] = []
        seeded_t: list[float] = []
        for minute, seen in zip(minute_of, recorded, strict=True):
            rate = per_minute.get(minute, (0.0, 0.0)) if seen else (0.0, 0.0)
            seeded_r.append(rate[0])
            seeded_t.append(rate[1])
        self.requests = deque([*seeded_r, *self.requests], maxlen=SAMPLES)
        self.tokens = deque([*seeded_t, *self.tokens], maxlen=SAMPLES)

    def queue_growing(self) -> bool:
        recent = list(self.queue)[-QUEUE_GROWTH_SAMPLES:]
        return (
            len(recent) == QUEUE_GROWTH_SAMPLES
            and recent[-1] > recent[0] > 0
            and all(b >= a for a, b in itertools.pairwise(recent))
        )


def servers(model: Mapping[str, Any]) -> tuple[int, int]:
    """(ready, listed) workers and backends serving a model: what READY shows."""
    return (
        model.get("ready_workers", 0) + model.get("ready_backends", 0),
        model.get("workers", 0) + model.get("backends", 0),
    )


def alerts(
    store: StateStore,
    throughput: Throughput,
    now: float,
    stale_after: float,
    failing: Sequence[FailureRate] = (),
) -> list[Text]:
    """What an on-call operator should look at first. `failing`: workers whose recent jobs
    fail at or above the configured share (`FailureRates.failing()`), not any failure."""
    found = _server_alerts(store.server)
    found += _model_alerts(store.items["models"].values())
    found += _backend_alerts(store.backends.values())
    if throughput.queue_growing():
        found.append(Text(f"▲ queue growing: {throughput.queue[-1]} waiting", "bold yellow"))
    found += _stale_alerts(store.workers.values(), now, stale_after)
    found += _unresponsive_alerts(store.workers.values())
    found += _failing_alerts(store.workers, failing, now)
    return found


def _server_alerts(server: Mapping[str, Any]) -> list[Text]:
    if server.get("status") == "draining":
        return [
            Text.assemble(
                ("✖ ", "bold red"),
                ("server draining", "bold"),
                f": new requests get 503; {server.get('inflight', 0)} in flight"
                " (undrain from the palette)",
            )
        ]
    if server.get("status") == "not_ready":
        return [
            Text.assemble(
                ("✖ ", "bold red"),
                ("gateway not ready", "bold"),
                ": ",
                Text(str(server.get("status_reason") or "no worker or backend can take jobs")),
            )
        ]
    return []


def _model_alerts(models: Iterable[Mapping[str, Any]]) -> list[Text]:
    """Models nothing ready can serve."""
    found: list[Text] = []
    for model in models:
        ready_n, total = servers(model)
        if ready_n == 0:
            backends = model.get("backends", 0)
            found.append(
                Text.assemble(
                    ("✖ ", "bold red"),
                    (model["id"], "bold"),
                    f": no ready worker{' or backend' if backends else ''}"
                    f" ({total} listed, {model.get('queued', 0)} queued)",
                )
            )
    return found


def _backend_alerts(backends: Iterable[BackendRow]) -> list[Text]:
    """Enabled backends out of routing, or unhealthy while still in it."""
    found: list[Text] = []
    for backend in backends:
        if not backend.get("enabled", True):
            continue
        if not backend.get("routing", True):
            found.append(
                Text.assemble(
                    ("✖ ", "bold red"),
                    ("backend " + str(backend["id"]), "bold"),
                    " out of routing: ",
                    Text(str(backend.get("last_error") or "failed probes")),
                )
            )
        elif backend.get("status") == "unhealthy":  # still in routing: one bad probe so far
            failures = backend.get("consecutive_failures", 0)
            found.append(
                Text.assemble(
                    ("▲ ", "bold yellow"),
                    ("backend " + str(backend["id"]), "bold"),
                    f" unhealthy ({plural(failures, 'failed probe')}): ",
                    Text(str(backend.get("last_error") or "probe failed")),
                )
            )
    return found


def _stale_alerts(workers: Iterable[WorkerRow], now: float, stale_after: float) -> list[Text]:
    """Workers whose heartbeat is late (one line)."""
    found: list[Text] = []
    stale = [
        w["id"]
        for w in workers
        if w.get("status") not in ("gone",)
        and now - (parse_ts(w.get("last_heartbeat")) or now) > stale_after
    ]
    if stale:
        shown = ", ".join(sorted(stale)[:5]) + (f" +{len(stale) - 5}" if len(stale) > 5 else "")
        found.append(Text(f"▲ stale heartbeat (> {stale_after:g}s): {shown}", "bold yellow"))
    return found


def _unresponsive_alerts(workers: Iterable[WorkerRow]) -> list[Text]:
    """Workers the gateway took out of routing because their jobs went unanswered (one line:
    they heartbeat, so nothing else flags them)."""
    stuck = sorted(w["id"] for w in workers if w.get("status") == "unresponsive")
    if not stuck:
        return []
    shown = ", ".join(stuck[:5]) + (f" +{len(stuck) - 5}" if len(stuck) > 5 else "")
    return [
        Text.assemble(
            ("⊘ ", "bold magenta"),
            ("unresponsive", "bold"),
            f" (jobs unanswered, out of routing): {shown}",
        )
    ]


def _failing_alerts(
    workers: Mapping[str, WorkerRow], failing: Sequence[FailureRate], now: float
) -> list[Text]:
    """Up to five workers whose recent jobs fail too often, with their last error."""
    found: list[Text] = []
    for rate in list(failing)[:5]:
        worker = workers.get(rate.worker_id) or WorkerRow(id=rate.worker_id)
        last_at = parse_ts(worker.get("last_error_at"))
        last = f", last {age(now - last_at)} ago" if last_at else ""
        found.append(
            Text.assemble(
                ("▲ ", "bold yellow"),
                (rate.worker_id, "bold"),
                f" failing: {rate.failed} of {plural(rate.jobs, 'job')} ({rate.share:.0%})"
                f" in the last {age(rate.span_s)}{last}: ",
                Text(str(worker.get("last_error") or "")),
            )
        )
    return found


@register_view("1")
class OverviewView(TableView):
    view_id = "overview"
    title = "Overview"
    collection = "models"
    default_sort = ("id", False)

    def __init__(self) -> None:
        super().__init__()
        self.throughput = Throughput()
        self._store: StateStore | None = None
        self._shown: tuple[Any, ...] = ()
        self._alerts_shown: str | None = None
        self._failure_rates: FailureRates | None = None
        self._seeded_for: object = None  # the session whose ledger seeded the sparklines

    @property
    def failure_rates(self) -> FailureRates:
        if self._failure_rates is None:
            config = self.panel.config.alerts
            self._failure_rates = FailureRates(
                config.failing_window, config.failing_share, config.failing_min_jobs
            )
        return self._failure_rates

    def columns(self) -> Sequence[Column]:
        def ready(m: Mapping[str, Any]) -> Text:
            ready_n, total = servers(m)
            style = "bold red" if ready_n == 0 else ("yellow" if ready_n < total else "")
            return Text(f"{ready_n}/{total}", style)

        def load(m: Mapping[str, Any]) -> str:
            return bar(m.get("inflight", 0), max(m.get("capacity", 0), 1), 10)

        return [
            Column("id", "MODEL", lambda m: m["id"], width=28, flex=True),
            Column(
                "ready",
                "READY",
                ready,
                sort_key=lambda m: servers(m)[0],
                width=7,
                align="right",
            ),
            Column(
                "inflight",
                "IN-FLIGHT",
                lambda m: f"{m.get('inflight', 0)}/{m.get('capacity', 0)}",
                sort_key=lambda m: m.get("inflight", 0),
                width=10,
                align="right",
            ),
            Column(
                "load",
                "LOAD",
                load,
                sort_key=lambda m: m.get("inflight", 0) / max(m.get("capacity", 0), 1),
                width=16,
                priority=1,
            ),
            Column(
                "queued",
                "QUEUED",
                lambda m: str(m.get("queued", 0)),
                sort_key=lambda m: m.get("queued", 0),
                width=7,
                align="right",
            ),
        ]

    def compose(self) -> ComposeResult:
        with Horizontal(id="overview-top"):
            with Vertical(classes="overview-panel"):
                yield Static("requests/s", id="req-label", classes="panel-title")
                yield Sparkline([], id="req-spark")
                yield Static("tokens/s", id="tok-label", classes="panel-title")
                yield Sparkline([], id="tok-spark")
            with Vertical(classes="overview-panel"):
                yield Static("workers by status", classes="panel-title")
                yield Static(id="status-counts")
        yield Static("models", classes="panel-title")
        yield from super().compose()
        yield Static("alerts", classes="panel-title")
        yield Static(id="alerts")

    def show_state(self, store: StateStore, change: Change | None) -> None:
        self._store = store
        super().show_state(store, change)
        if change is None or change.snapshot:
            self._show_counts(store)
            self._show_alerts()

    def _show_counts(self, store: StateStore) -> None:
        counts = Counter(w.get("status", "unknown") for w in store.workers.values())
        styles = self.panel.status_styles
        text = Text()
        for status in COUNTED_STATUSES:
            text.append_text(status_text(status, styles))
            text.append(f" {counts.get(status, 0)}\n")
        if text.plain != getattr(self, "_counts_shown", None):
            self._counts_shown = text.plain
            self.query_one("#status-counts", Static).update(text)

    def _show_alerts(self) -> None:
        if self._store is None:
            return
        app = self.panel
        found = alerts(
            self._store,
            self.throughput,
            app.now(),
            app.heartbeat_stale_after,
            self.failure_rates.failing(),
        )
        state = app.session.state
        if state.status in (ConnectionStatus.RECONNECTING, ConnectionStatus.UNAUTHORIZED):
            data_age = state.data_age(app.now())
            old = f", data {age(data_age)} old" if data_age is not None else ""
            shown = (
                "what follows is the last known state"
                if self._store.has_state
                else "no state received yet"
            )
            found.insert(
                0,
                Text.assemble(
                    ("✖ ", "bold red"),
                    ("not connected to the gateway", "bold"),
                    f" ({state.status.value}{old}): {shown}",
                ),
            )
        body = Text("\n").join(found) if found else Text("✓ nothing needs attention", "green")
        if body.plain != self._alerts_shown:
            self._alerts_shown = body.plain
            self.query_one("#alerts", Static).update(body)

    def _seed_from_ledger(self) -> None:
        session = self.panel.session
        if session.client is None or self._seeded_for is session:
            return
        self._seeded_for = session
        self._fetch_seed()

    @work(exclusive=True, group="overview-seed")
    async def _fetch_seed(self) -> None:
        client = self.panel.session.client
        if client is None:
            return
        try:
            series = await client.history.series("15m")
        except ClientError:
            return  # no ledger (history off, an older gateway): the rates start from now
        points = [(p.t, float(p.requests), float(p.tokens_out)) for p in series.points]
        self.throughput.seed(points, time.time(), series.since)

    def _rates_known(self) -> bool:
        """Rates come from a gateway being followed: a saved snapshot never moves, and while
        the gateway cannot be reached nothing does either; a rate of 0 would be a guess."""
        return self.panel.session.state.status is ConnectionStatus.LIVE

    def background_tick(self, store: StateStore) -> None:
        self._seed_from_ledger()
        self._store = store
        now = time.monotonic()
        if self._rates_known():
            self.throughput.sample(store.server, now)
        else:  # the next rate starts from the next live sample, not across the outage
            self.throughput.forget_last()
        self.failure_rates.sample(store.items["workers"], now)

    def tick(self) -> None:
        """Fleet-wide scans (status counts, alerts) run here, once a second, not per update."""
        super().tick()
        if self._store is None:
            return
        self._show_counts(self._store)
        requests, tokens = list(self.throughput.requests), list(self.throughput.tokens)
        known = self._rates_known()
        last_r = requests[-1] if requests else 0.0
        last_t = tokens[-1] if tokens else 0.0
        # An idle gateway adds a zero a second: the lines stay empty and the labels at 0, so
        # nothing is redrawn (an idle panel writes nothing to the terminal).
        shown = (
            tuple(requests) if any(requests) else (),
            tuple(tokens) if any(tokens) else (),
            # No two samples yet (or an offline snapshot, which has one): no rate, not 0.
            f"requests/s  {last_r:.1f}" if requests and known else "requests/s  -",
            f"tokens/s  {count(last_t)}" if tokens and known else "tokens/s  -",
        )
        if shown != self._shown:
            self._shown = shown
            self.query_one("#req-spark", Sparkline).data = list(shown[0])
            self.query_one("#tok-spark", Sparkline).data = list(shown[1])
            self.query_one("#req-label", Static).update(shown[2])
            self.query_one("#tok-label", Static).update(shown[3])
        self._show_alerts()


__all__ = ["STATUS_GLYPHS", "OverviewView"]
