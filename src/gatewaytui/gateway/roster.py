"""Connected workers: admitting them, applying their frames and status, losing them (and
evicting the silent ones), and the operator's per-worker drain."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from gatewaytui.gateway.config import GatewayConfig
from gatewaytui.gateway.dispatch import Dispatcher, notify_worker
from gatewaytui.gateway.events import EventLog
from gatewaytui.gateway.jobs import ConflictError, RawChunks, RawResult, UnknownTargetError
from gatewaytui.gateway.live import LiveState
from gatewaytui.gateway.metrics import GatewayMetrics
from gatewaytui.gateway.registry import (
    DuplicateWorkerError,
    WorkerConnection,
    WorkerRecord,
    WorkerRegistry,
)
from gatewaytui.gateway.scheduler import Scheduler
from gatewaytui.gateway.slots import SlotQueue
from gatewaytui.gateway.sweep import SilentPeerSweep
from gatewaytui.gateway.worker_logs import WorkerLogBroker
from gatewaytui.schema import WorkerStatus
from gatewaytui.schema.api import ActionResult
from gatewaytui.schema.protocol import (
    CLOSE_EVICTED,
    FEATURE_ACCEPTED,
    FEATURE_CHUNKS,
    FEATURE_RAW_RESULTS,
    AcceptedFrame,
    ChunkFrame,
    DrainFrame,
    ErrorFrame,
    HeartbeatFrame,
    LogsFrame,
    RegisteredFrame,
    RegisterFrame,
    ResultFrame,
    StatusFrame,
)
from gatewaytui.shared.text import plural

log = logging.getLogger("gatewaytui.gateway")


class WorkerRoster:
    """The registry's live side: workers come, report, drain and go."""

    def __init__(
        self,
        config: GatewayConfig,
        registry: WorkerRegistry,
        scheduler: Scheduler,
        *,
        live: LiveState,
        queue: SlotQueue,
        dispatch: Dispatcher,
        metrics: GatewayMetrics,
        events: EventLog,
        worker_logs: WorkerLogBroker,
    ) -> None:
        self.config = config
        self.registry = registry
        self.scheduler = scheduler
        self.live = live
        self.queue = queue
        self.dispatch = dispatch
        self.metrics = metrics
        self.events = events
        self.worker_logs = worker_logs
        # Set by a fleet (gateway/cluster): applies the fleet's drain flag to a worker
        # being admitted, so a drained worker stays drained wherever it reconnects.
        self.on_admit: Callable[[WorkerRecord], None] | None = None

    # ---- a worker's connection ------------------------------------------------------------

    def registered(
        self, frame: RegisterFrame, conn: WorkerConnection, remote: str | None
    ) -> tuple[WorkerRecord, dict[str, Any]]:
        """Admit a worker; raises DuplicateWorkerError for a live id. Returns the reply."""
        try:
            worker, reconnected = self.registry.register(frame, conn, remote)
        except DuplicateWorkerError as exc:
            self.metrics.worker_events.labels("refused").inc()
            self.events.add("refuse", str(exc), level="warning", worker_id=frame.id)
            raise
        if self.on_admit is not None:
            self.on_admit(worker)
        self.scheduler.add(worker)
        self.live.touch_worker(worker)
        self.metrics.worker_events.labels("connect").inc()
        models = ", ".join(worker.models) or "no models"
        verb = "reconnected" if reconnected else "connected"
        self.events.add(
            "connect",
            f"worker {worker.id} {verb} from {remote or '?'} ({models}, x{worker.max_concurrency})",
            worker_id=worker.id,
        )
        self.queue.pump()
        reply = RegisteredFrame(
            worker_id=worker.id,
            heartbeat_interval_s=self.config.heartbeat_interval,
            heartbeat_expiry_s=self.config.heartbeat_expiry,
            max_frame_bytes=self.config.max_frame_bytes,
            draining=worker.counters.draining,
            features=[FEATURE_CHUNKS, FEATURE_RAW_RESULTS, FEATURE_ACCEPTED],
        )
        return worker, reply.model_dump()

    def frame(self, worker: WorkerRecord, frame: Any) -> None:
        """Apply one parsed frame from a registered worker."""
        worker.last_heartbeat = time.time()
        if isinstance(frame, RawChunks | RawResult | ChunkFrame | ResultFrame | ErrorFrame):
            self.dispatch.route_frame(worker, frame)
        elif isinstance(frame, AcceptedFrame):
            self.dispatch.accepted(worker, frame.job_id)
        elif isinstance(frame, HeartbeatFrame):
            was_connected = not worker.heard_from
            worker.heard_from = True
            worker.cpu_percent = frame.cpu_percent
            worker.mem_percent = frame.mem_percent
            if frame.gpus is not None:
                worker.gpus = [g.model_dump() for g in frame.gpus]
            # A heartbeat cannot change capacity, so the per-model summary stays valid.
            self.live.hub.touch("workers", worker.id)
            if was_connected:
                self.live.mark_dirty()
        elif isinstance(frame, StatusFrame):
            self._apply_status(worker, frame)
        elif isinstance(frame, LogsFrame):
            self.worker_logs.on_frame(worker, frame)
        elif isinstance(frame, RegisterFrame):
            raise ValueError("register may only be sent once per connection")

    def _apply_status(self, worker: WorkerRecord, frame: StatusFrame) -> None:
        before = worker.status
        worker.heard_from = True
        if frame.ready is not None:
            worker.reported_ready = frame.ready
        if frame.ready is not None or frame.draining is not None:
            worker.status_reason = (
                frame.reason if not worker.reported_ready or frame.draining else None
            )
        if frame.draining is not None:
            if frame.draining and not worker.self_draining:
                worker.self_drain_started_at = time.time()
            elif not frame.draining:
                worker.self_drain_started_at = None
            worker.self_draining = frame.draining
        if frame.max_concurrency is not None:
            worker.max_concurrency = frame.max_concurrency
        if frame.models is not None and tuple(frame.models) != worker.models:
            old_keys = list(self.scheduler._keys(worker))
            self.registry.update_models(worker, frame.models)
            self.scheduler.reindex(worker, old_keys)
        self.scheduler.update(worker)
        self.live.touch_worker(worker)
        after = worker.status
        if after != before:
            level = "warning" if after is WorkerStatus.NOT_READY else "info"
            why = f": {worker.status_reason}" if worker.status_reason else ""
            kind = "self_drain" if after is WorkerStatus.DRAINING else "status"
            self.events.add(
                kind, f"worker {worker.id} is {after.value}{why}", level=level, worker_id=worker.id
            )
        self.queue.pump()

    def disconnected(
        self, worker: WorkerRecord, reason: str, *, evicted: bool = False, clean: bool = False
    ) -> None:
        """The connection is gone: fail over its jobs and keep the record visible as gone."""
        if worker.gone_at is not None:
            return
        self.registry.mark_gone(worker)
        self.scheduler.remove(worker)
        self.worker_logs.worker_gone(worker.id)
        self.dispatch.fail_worker(worker, reason)
        worker.inflight = 0
        self.live.touch_worker(worker)
        kind = "evict" if evicted else "disconnect"
        self.metrics.worker_events.labels(kind).inc()
        self.events.add(
            kind,
            f"worker {worker.id} {'evicted' if evicted else 'disconnected'}: {reason}",
            level="info" if clean and not evicted else "warning",
            worker_id=worker.id,
        )

    # ---- the silent-peer sweep ------------------------------------------------------------

    def sweeper(self) -> SilentPeerSweep:
        """Evict silent workers and forget gone ones past the retention period."""
        expiry = self.config.heartbeat_expiry

        def evict(worker: WorkerRecord, silence: float) -> None:
            reason = f"no heartbeat for {silence:.0f}s (expiry {expiry:g}s)"
            self.disconnected(worker, reason, evicted=True)

        def forget(worker: WorkerRecord) -> None:
            self.registry.remove(worker)
            self.metrics.forget_worker(worker.id)
            self.live.touch_worker(worker)

        return SilentPeerSweep(
            noun="worker",
            peers=lambda: self.registry,
            expiry=expiry,
            retention=self.config.gone_retention,
            interval=max(min(self.config.heartbeat_interval / 2, 1.0), 0.05),
            evict=evict,
            forget=forget,
            close_code=CLOSE_EVICTED,
        )

    # ---- operator actions -----------------------------------------------------------------

    def _worker_or_404(self, worker_id: str) -> WorkerRecord:
        worker = self.registry.get(worker_id)
        if worker is None:
            raise UnknownTargetError(f"no worker with id {worker_id!r}")
        return worker

    def drain(self, worker_id: str) -> ActionResult:
        worker = self._worker_or_404(worker_id)
        if worker.gone_at is not None:
            raise ConflictError(f"worker {worker_id!r} is gone; there is nothing to drain")
        if worker.counters.draining:
            return _result(worker_id, worker, f"worker {worker_id} is already draining")
        worker.counters.draining = True
        worker.counters.drain_started_at = time.time()
        self.scheduler.update(worker)
        self.live.touch_worker(worker)
        notify_worker(worker, DrainFrame(draining=True).model_dump())
        self.events.add(
            "drain",
            f"worker {worker_id} draining by operator, {plural(worker.inflight, 'job')} left",
            worker_id=worker_id,
        )
        if worker.inflight == 0:
            self.events.add("drained", f"worker {worker_id} drained", worker_id=worker_id)
        return _result(worker_id, worker, f"worker {worker_id} is draining")

    def undrain(self, worker_id: str) -> ActionResult:
        worker = self._worker_or_404(worker_id)
        if worker.gone_at is not None:
            raise ConflictError(f"worker {worker_id!r} is gone; it rejoins when it reconnects")
        if not worker.counters.draining:
            return _result(worker_id, worker, f"worker {worker_id} is not draining")
        worker.counters.draining = False
        worker.counters.drain_started_at = None
        self.scheduler.update(worker)
        self.live.touch_worker(worker)
        notify_worker(worker, DrainFrame(draining=False).model_dump())
        self.events.add("undrain", f"worker {worker_id} re-added by operator", worker_id=worker_id)
        self.queue.pump()
        return _result(worker_id, worker, f"worker {worker_id} is back in rotation")


def _result(worker_id: str, worker: WorkerRecord, message: str) -> ActionResult:
    return ActionResult(message=message, target=worker_id, details={"inflight": worker.inflight})
