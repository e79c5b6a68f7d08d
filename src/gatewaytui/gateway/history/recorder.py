"""What the gateway core calls when a request ends: one narrow hook per kind of request.

`job_ended` (chat, stream, embeddings), `request_refused` (one refused before it became a
job) and `mcp_call_ended` build the ledger record, feed
the aggregated failure events and the gateway-overhead histogram. Nothing here does I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from typing import TYPE_CHECKING, Any

from prometheus_client import Histogram

from gatewaytui.gateway.history.failures import FailureEvents
from gatewaytui.gateway.history.ledger import Ledger, LedgerSettings
from gatewaytui.gateway.history.record import job_record, mcp_record, refused_record

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from gatewaytui.gateway.config import GatewayConfig
    from gatewaytui.gateway.events import EventLog

# The job the current request task created: the HTTP layer reads it for the timing headers
# (embeddings return only the body). Set in `Gateway._new_job`, in the request's own task.
CURRENT_JOB: contextvars.ContextVar[Any] = contextvars.ContextVar("gatewaytui_job", default=None)

_OVERHEAD_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip


class HistoryRecorder:
    """Owned by the Gateway (given its config, event log and metrics registry, not itself);
    `ledger` is None when history is off."""

    def __init__(
        self, config: GatewayConfig, events: EventLog, registry: CollectorRegistry
    ) -> None:
        c = config
        self._events = events
        self.replica: str | None = None  # set by the fleet when clustered
        self.ledger: Ledger | None = None
        if c.history_enabled:
            self.ledger = Ledger(
                LedgerSettings(
                    path=c.history_path,
                    queue_size=c.history_queue_size,
                    flush_interval=c.history_flush_interval,
                    max_age_s=c.history_max_age,
                    max_bytes=c.history_max_size_mb * 1024 * 1024,
                ),
                report=self._event,
            )
        self.failures = FailureEvents(self._event)
        self.overhead = Histogram(
            "gatewaytui_gateway_overhead_seconds",
            "Time the gateway itself added to a proxied request (total minus upstream and "
            "minus queue wait), by kind.",
            ["kind"],
            buckets=_OVERHEAD_BUCKETS,
            registry=registry,
        )
        self._overhead_by_kind: dict[str, Any] = {}  # labelled children, one per kind
        self._flusher: asyncio.Task[None] | None = None

    def _event(self, kind: str, message: str, level: str = "info") -> None:
        self._events.add(kind, message, level=level)

    async def start(self) -> None:
        if self.ledger is not None:
            self.ledger.start()
        self._flusher = asyncio.create_task(self._flush_loop(), name="failure-events")

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        self.failures.flush(now=float("inf"))
        if self.ledger is not None:
            await self.ledger.stop()

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.failures.flush()

    # ---- hooks ----------------------------------------------------------------------------

    def job_ended(self, job: Any, ok: bool, embeddings: int, exc: BaseException | None) -> None:
        """A chat / embeddings job left the in-flight table (ok, failed, or abandoned)."""
        now = time.time()
        exc = job.error if exc is None else exc
        record = job_record(
            job,
            ok=ok,
            exc=exc,
            key=job.key,
            replica=self.replica,
            ended_at=now,
            duration_ms=(time.monotonic() - job.mono) * 1000,
            embeddings=embeddings,
        )
        if self.ledger is not None:
            self.ledger.add(record)
        if not ok:
            self.failures.failed(
                job.model, record[18], record[17], record[19], job.worker or job.backend
            )

    def request_refused(
        self,
        kind: str,
        model: Any,
        stream: bool,
        client: str | None,
        key: str | None,
        exc: Exception,
    ) -> None:
        """A chat / embeddings request refused before it became a job (a bad body, the server
        draining, an unknown model): a record with its outcome, no worker, no duration."""
        if self.ledger is None:
            return
        self.ledger.add(
            refused_record(
                kind,
                model if isinstance(model, str) else None,
                stream,
                client,
                key,
                exc,
                replica=self.replica,
                now=time.time(),
            )
        )

    def mcp_call_ended(self, call: Any, error: str | None, cancelled: bool) -> None:
        if self.ledger is None or not call.counted:
            return
        record = mcp_record(
            call,
            error=error,
            cancelled=cancelled,
            replica=self.replica,
            ended_at=time.time(),
            duration_ms=(time.monotonic() - call.started) * 1000,
        )
        self.ledger.add(record)
        if error is not None:
            self.failures.failed(f"MCP {call.relay.id}", record[18], record[17], error)

    def overhead_us(self, job: Any, started: float) -> int:
        """Gateway-added microseconds of a request that began at `started` (perf_counter),
        observed in the histogram: total minus upstream (time with a job out at a worker
        or backend) minus queue wait."""
        now = time.perf_counter()
        seconds = max(now - started - job.upstream_so_far() - job.queue_wait_s, 0.0)
        child = self._overhead_by_kind.get(job.kind)
        if child is None:  # `labels()` per request showed in profiles: once per series
            child = self._overhead_by_kind[job.kind] = self.overhead.labels(job.kind)
        child.observe(seconds)
        return int(seconds * 1_000_000)

    def status(self) -> dict[str, Any]:
        if self.ledger is None:
            return {"enabled": False}
        return self.ledger.status()
