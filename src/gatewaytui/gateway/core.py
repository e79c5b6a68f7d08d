"""The gateway core: workers, scheduling, the wait queue, jobs, drain and live state.

Everything here runs on one asyncio loop, so each synchronous stretch is atomic: a pick and
its slot reservation, a status change and the marks that tell the state hub about it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import gatewaytui
from gatewaytui.gateway.backends import BackendManager
from gatewaytui.gateway.clock import iso
from gatewaytui.gateway.config import GatewayConfig
from gatewaytui.gateway.events import EventLog
from gatewaytui.gateway.hub import Collection, StateHub, encode
from gatewaytui.gateway.jobs import (
    Assignment,
    BadRequestError,
    Cancelled,
    DrainingError,
    GatewayError,
    Job,
    JobCancelledError,
    ModelNotFoundError,
    QueueFullError,
    QueueTimeoutError,
    UpstreamTimeoutError,
    WorkerJobError,
    WorkerLost,
    WorkerLostError,
    new_job_id,
)
from gatewaytui.gateway.mcp import MCPRelays
from gatewaytui.gateway.metrics import GatewayMetrics
from gatewaytui.gateway.registry import (
    DuplicateWorkerError,
    WorkerConnection,
    WorkerRecord,
    WorkerRegistry,
    model_family,
)
from gatewaytui.gateway.scheduler import Scheduler
from gatewaytui.gateway.worker_logs import WorkerLogBroker
from gatewaytui.schema import ModelSummary, ServerStatus, WorkerStatus
from gatewaytui.schema.protocol import (
    CLOSE_EVICTED,
    CancelFrame,
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

log = logging.getLogger("gatewaytui.gateway")

# Worker error codes that mean "not this worker, try another" rather than a failed request.
RETRYABLE_CODES = frozenset({"draining", "over_capacity", "not_ready", "model_not_found"})

SERVING = frozenset({WorkerStatus.CONNECTED, WorkerStatus.IDLE, WorkerStatus.WORKING})


class UnknownTargetError(GatewayError):
    status, type, code = 404, "invalid_request_error", "not_found"


class ConflictError(GatewayError):
    status, type, code = 409, "invalid_request_error", "conflict"


@dataclass(eq=False)
class _Waiter:
    """A request waiting in the FIFO queue for a free slot."""

    model: str
    exclude: frozenset[str]
    future: asyncio.Future[WorkerRecord]
    enqueued: float = field(default_factory=time.monotonic)


@dataclass
class _Totals:
    requests: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    embeddings: int = 0


class Gateway:
    """Owns all live state; HTTP and WebSocket handlers are thin shells around it."""

    def __init__(self, config: GatewayConfig | None = None) -> None:
        self.config = config or GatewayConfig.build()
        c = self.config
        self.started_at = time.time()
        self.listen = f"{c.host}:{c.port}"
        self.registry = WorkerRegistry()
        self.scheduler = Scheduler(c.scheduler, c.model_family_matching)
        self.jobs: dict[str, Job] = {}
        self._assignments: dict[str, Assignment] = {}
        self._waiters: deque[_Waiter] = deque()
        self.totals = _Totals()
        self.draining = False
        self.drain_started_at: float | None = None
        self.drain_deadline: float | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self.on_drained: Callable[[], None] | None = None
        self.on_undrained: Callable[[], None] | None = None  # the server resets its signals
        self.exit_after_drain = False
        self._derived_dirty = True
        self._models: dict[str, dict[str, Any]] = {}
        self._serving_workers = 0
        self.hub = StateHub(
            {
                "workers": Collection(self._worker_item, self._all_workers),
                "jobs": Collection(self._job_item, self._all_jobs),
                "models": Collection(self._models.get, lambda: list(self._models.values())),
                "plugins": Collection(self._plugin_item, self._all_plugins),
            },
            self._server_item,
            rate=c.state_stream_rate,
            keepalive=c.state_keepalive,
            event_log_size=c.event_log_size,
            before_flush=self._refresh_derived,
        )
        self.events = EventLog(c.event_log_size, on_event=self.hub.add_event)
        self.metrics = GatewayMetrics(self._live_metrics, per_worker=c.metrics_per_worker)
        self.mcp = MCPRelays(c, self.hub, self.events, self.metrics.registry, lambda: self.draining)
        self.backends = BackendManager(self)  # loads the store: BackendStoreError if broken
        self._plugins = {p.id: p.model_dump(mode="json") for p in c.options.describe()}
        for plugin_id in self._plugins:
            self.hub.touch("plugins", plugin_id)
        self._tasks: list[asyncio.Task[Any]] = []
        self.worker_logs = WorkerLogBroker()

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self.hub.run(), name="state-hub"),
            asyncio.create_task(self._sweep_loop(), name="worker-sweep"),
            asyncio.create_task(self.mcp.sweep_loop(), name="mcp-sweep"),
        ]
        await self.backends.start()
        self.events.add(
            "server_start", f"gateway {gatewaytui.__version__} listening on {self.listen}"
        )
        # Everything allocated so far lives as long as the process: keep full collections
        # from walking it (they showed up as the slowest scheduler picks).
        gc.freeze()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.backends.stop()
        if self._drain_task is not None:
            self._drain_task.cancel()

    # ---- state items ----------------------------------------------------------------------

    def _worker_item(self, worker_id: str) -> dict[str, Any] | None:
        worker = self.registry.get(worker_id)
        return worker.to_dict() if worker is not None else None

    def _all_workers(self) -> list[dict[str, Any]]:
        return [w.to_dict() for w in self.registry]

    def _job_item(self, job_id: str) -> dict[str, Any] | None:
        job = self.jobs.get(job_id)
        return job.to_dict() if job is not None else None

    def _all_jobs(self) -> list[dict[str, Any]]:
        return [j.to_dict() for j in self.jobs.values()]

    def _plugin_item(self, plugin_id: str) -> dict[str, Any] | None:
        return self._plugins.get(plugin_id)

    def _all_plugins(self) -> list[dict[str, Any]]:
        return list(self._plugins.values())

    def _server_item(self) -> dict[str, Any]:
        status, reason = self.readiness()
        return {
            "version": gatewaytui.__version__,
            "status": status.value,
            "status_reason": reason,
            "started_at": iso(self.started_at),
            "listen": self.listen,
            "draining": self.draining,
            "drain_started_at": iso(self.drain_started_at),
            "drain_deadline": iso(self.drain_deadline),
            "inflight": len(self.jobs),
            "queue": {"length": len(self._waiters), "capacity": self.config.queue_size},
            "scheduler": self.config.scheduler,
            "read_only": False,
            "requests_total": self.totals.requests,
            "tokens_in_total": self.totals.tokens_in,
            "tokens_out_total": self.totals.tokens_out,
            "embeddings_total": self.totals.embeddings,
        }

    def state(self) -> dict[str, Any]:
        """The whole state, fresh (for `GET /api/state`)."""
        return self.hub.full_state(self.events.all())

    def readiness(self) -> tuple[ServerStatus, str | None]:
        if self.draining:
            return ServerStatus.DRAINING, "server is draining"
        self._refresh_derived()
        if self._serving_workers == 0 and not self.backends.routable_count():
            return ServerStatus.NOT_READY, "no worker can take jobs"
        return ServerStatus.READY, None

    def _touch_worker(self, worker: WorkerRecord) -> None:
        self.hub.touch("workers", worker.id)
        self._derived_dirty = True

    def _touch_job(self, job: Job) -> None:
        self.hub.touch("jobs", job.id)

    def _refresh_derived(self) -> None:
        """Recompute per-model capacity and the serving count after workers changed."""
        if not self._derived_dirty:
            return
        self._derived_dirty = False
        models: dict[str, dict[str, Any]] = {}
        serving = 0
        for worker in self.registry:
            status = worker.status
            if status is WorkerStatus.GONE:
                continue
            is_serving = status in SERVING
            serving += is_serving
            for model in worker.models:
                m = models.get(model)
                if m is None:
                    m = models[model] = ModelSummary(id=model).model_dump()
                m["workers"] += 1
                m["owned_by"].append(worker.id)
                if is_serving:
                    m["ready_workers"] += 1
                    m["capacity"] += worker.max_concurrency
        self.backends.add_models(models)
        for assignment in self._assignments.values():
            m = models.get(assignment.model)
            if m is not None:
                m["inflight"] += 1
        for waiter in self._waiters:
            m = models.get(waiter.model)
            if m is not None:
                m["queued"] += 1
        for model_id in set(self._models) | set(models):
            self.hub.touch("models", model_id)
        self._models.clear()
        self._models.update(models)
        self._serving_workers = serving
        self.hub.touch_server()

    def _live_metrics(self) -> dict[str, Any]:
        by_status = Counter(w.status.value for w in self.registry)
        return {
            "inflight": len(self.jobs),
            "queue_length": len(self._waiters),
            "workers_by_status": by_status,
            "draining": self.draining,
            "subscribers": self.hub.subscriber_count,
            "resyncs": self.hub.resyncs,
        }

    # ---- workers --------------------------------------------------------------------------

    def worker_registered(
        self, frame: RegisterFrame, conn: WorkerConnection, remote: str | None
    ) -> tuple[WorkerRecord, dict[str, Any]]:
        """Admit a worker; raises DuplicateWorkerError for a live id. Returns the reply."""
        try:
            worker, reconnected = self.registry.register(frame, conn, remote)
        except DuplicateWorkerError as exc:
            self.metrics.worker_events.labels("refused").inc()
            self.events.add("refuse", str(exc), level="warning", worker_id=frame.id)
            raise
        self.scheduler.add(worker)
        self._touch_worker(worker)
        self.metrics.worker_events.labels("connect").inc()
        models = ", ".join(worker.models) or "no models"
        verb = "reconnected" if reconnected else "connected"
        self.events.add(
            "connect",
            f"worker {worker.id} {verb} from {remote or '?'} ({models}, x{worker.max_concurrency})",
            worker_id=worker.id,
        )
        self._pump_queue()
        reply = RegisteredFrame(
            worker_id=worker.id,
            heartbeat_interval_s=self.config.heartbeat_interval,
            heartbeat_expiry_s=self.config.heartbeat_expiry,
            max_frame_bytes=self.config.max_frame_bytes,
            draining=worker.counters.draining,
        )
        return worker, reply.model_dump()

    def worker_frame(self, worker: WorkerRecord, frame: Any) -> None:
        """Apply one parsed frame from a registered worker."""
        now = time.time()
        worker.last_heartbeat = now
        if isinstance(frame, ChunkFrame | ResultFrame | ErrorFrame):
            assignment = self._assignments.get(frame.job_id)
            if assignment is None or assignment.worker is not worker:
                log.debug("frame for unknown job %s from %s ignored", frame.job_id, worker.id)
                return
            assignment.queue.put_nowait(frame)
            return
        if isinstance(frame, HeartbeatFrame):
            was_connected = not worker.heard_from
            worker.heard_from = True
            worker.cpu_percent = frame.cpu_percent
            worker.mem_percent = frame.mem_percent
            # A heartbeat cannot change capacity, so the per-model summary stays valid.
            self.hub.touch("workers", worker.id)
            if was_connected:
                self._derived_dirty = True
            return
        if isinstance(frame, StatusFrame):
            self._apply_status(worker, frame)
            return
        if isinstance(frame, LogsFrame):
            self.worker_logs.on_frame(worker, frame)
            return
        if isinstance(frame, RegisterFrame):
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
        self._touch_worker(worker)
        after = worker.status
        if after != before:
            level = "warning" if after is WorkerStatus.NOT_READY else "info"
            why = f": {worker.status_reason}" if worker.status_reason else ""
            kind = "self_drain" if after is WorkerStatus.DRAINING else "status"
            self.events.add(
                kind, f"worker {worker.id} is {after.value}{why}", level=level, worker_id=worker.id
            )
        self._pump_queue()

    def worker_disconnected(
        self, worker: WorkerRecord, reason: str, *, evicted: bool = False, clean: bool = False
    ) -> None:
        """The connection is gone: fail over its jobs and keep the record visible as gone."""
        if worker.gone_at is not None:
            return
        self.registry.mark_gone(worker)
        self.scheduler.remove(worker)
        self.worker_logs.worker_gone(worker.id)
        for assignment_id in list(worker.assignments):
            assignment = self._assignments.get(assignment_id)
            if assignment is not None:
                assignment.queue.put_nowait(WorkerLost(reason))
                self._release(assignment)
        worker.inflight = 0
        self._touch_worker(worker)
        kind = "evict" if evicted else "disconnect"
        self.metrics.worker_events.labels(kind).inc()
        self.events.add(
            kind,
            f"worker {worker.id} {'evicted' if evicted else 'disconnected'}: {reason}",
            level="info" if clean and not evicted else "warning",
            worker_id=worker.id,
        )

    def sweep(self, now: float | None = None) -> None:
        """Evict silent workers and forget gone ones past the retention period."""
        now = time.time() if now is None else now
        expiry, retention = self.config.heartbeat_expiry, self.config.gone_retention
        for worker in list(self.registry):
            if worker.gone_at is None:
                silence = now - worker.last_heartbeat
                if silence > expiry:
                    conn = worker.conn
                    self.worker_disconnected(
                        worker,
                        f"no heartbeat for {silence:.0f}s (expiry {expiry:g}s)",
                        evicted=True,
                    )
                    if conn is not None:
                        asyncio.get_running_loop().create_task(
                            conn.close(CLOSE_EVICTED, "heartbeat expired")
                        )
            elif now - worker.gone_at > retention:
                self.registry.remove(worker)
                self.metrics.forget_worker(worker.id)
                self._touch_worker(worker)

    async def _sweep_loop(self) -> None:
        interval = max(min(self.config.heartbeat_interval / 2, 1.0), 0.05)
        while True:
            await asyncio.sleep(interval)
            try:
                self.sweep()
            except Exception:
                log.exception("worker sweep failed")

    # ---- operator actions -----------------------------------------------------------------

    def _worker_or_404(self, worker_id: str) -> WorkerRecord:
        worker = self.registry.get(worker_id)
        if worker is None:
            raise UnknownTargetError(f"no worker with id {worker_id!r}")
        return worker

    def drain_worker(self, worker_id: str) -> dict[str, Any]:
        worker = self._worker_or_404(worker_id)
        if worker.gone_at is not None:
            raise ConflictError(f"worker {worker_id!r} is gone; there is nothing to drain")
        if worker.counters.draining:
            return {
                "message": f"worker {worker_id} is already draining",
                "inflight": worker.inflight,
            }
        worker.counters.draining = True
        worker.counters.drain_started_at = time.time()
        self.scheduler.update(worker)
        self._touch_worker(worker)
        self._notify_worker(worker, DrainFrame(draining=True).model_dump())
        self.events.add(
            "drain",
            f"worker {worker_id} draining by operator, {worker.inflight} job(s) left",
            worker_id=worker_id,
        )
        if worker.inflight == 0:
            self.events.add("drained", f"worker {worker_id} drained", worker_id=worker_id)
        return {"message": f"worker {worker_id} is draining", "inflight": worker.inflight}

    def undrain_worker(self, worker_id: str) -> dict[str, Any]:
        worker = self._worker_or_404(worker_id)
        if worker.gone_at is not None:
            raise ConflictError(f"worker {worker_id!r} is gone; it rejoins when it reconnects")
        if not worker.counters.draining:
            return {"message": f"worker {worker_id} is not draining", "inflight": worker.inflight}
        worker.counters.draining = False
        worker.counters.drain_started_at = None
        self.scheduler.update(worker)
        self._touch_worker(worker)
        self._notify_worker(worker, DrainFrame(draining=False).model_dump())
        self.events.add("undrain", f"worker {worker_id} re-added by operator", worker_id=worker_id)
        self._pump_queue()
        return {"message": f"worker {worker_id} is back in rotation", "inflight": worker.inflight}

    def _notify_worker(self, worker: WorkerRecord, frame: dict[str, Any]) -> None:
        conn = worker.conn
        if conn is not None:
            asyncio.get_running_loop().create_task(self._send_quietly(conn, frame))

    @staticmethod
    async def _send_quietly(conn: WorkerConnection, frame: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            await conn.send(frame)

    def cancel_job(self, job_id: str, reason: str = "cancelled by operator") -> dict[str, Any]:
        job = self.jobs.get(job_id)
        if job is None:
            raise UnknownTargetError(f"no in-flight job with id {job_id!r}")
        self._cancel(job, reason)
        self.events.add("cancel", f"job {job_id} {reason}", job_id=job_id)
        return {"message": f"job {job_id} cancelled"}

    def _cancel(self, job: Job, reason: str) -> None:
        job.cancel_reason = reason
        job.state = "cancelling"
        self._touch_job(job)
        for assignment in list(job.assignments.values()):
            assignment.queue.put_nowait(Cancelled(reason))

    def drain_server(
        self, timeout: float | None = None, *, exit_when_done: bool = False
    ) -> dict[str, Any]:
        timeout = self.config.drain_timeout if timeout is None else timeout
        if self.draining:
            return {"message": "server is already draining", "inflight": len(self.jobs)}
        self.draining = True
        self.drain_started_at = time.time()
        self.drain_deadline = self.drain_started_at + timeout
        self.hub.touch_server()
        for waiter in list(self._waiters):
            if not waiter.future.done():
                waiter.future.set_exception(DrainingError("server is draining"))
        self._waiters.clear()
        self.events.add(
            "server_drain",
            f"server draining: {len(self.jobs)} job(s) in flight, timeout {timeout:g}s",
            level="warning",
        )
        self.exit_after_drain = self.exit_after_drain or exit_when_done
        self._drain_task = asyncio.get_running_loop().create_task(self._finish_drain(timeout))
        return {"message": "server is draining", "inflight": len(self.jobs)}

    async def _finish_drain(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (self.jobs or self.mcp.calls) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        left = len(self.jobs) + len(self.mcp.calls)  # MCP calls in flight finish too
        self.events.add(
            "server_drained",
            "server drained" if not left else f"drain timeout with {left} job(s) left",
            level="warning" if left else "info",
        )
        if self.exit_after_drain:
            self._exit()

    def begin_exit_drain(self) -> None:
        """SIGTERM: drain (if not already) and exit once drained."""
        self.exit_after_drain = True
        if not self.draining:
            self.drain_server()
        elif self._drain_task is None or self._drain_task.done():
            self._exit()

    def _exit(self) -> None:
        if self.on_drained is not None:
            self.on_drained()

    def undrain_server(self) -> dict[str, Any]:
        if not self.draining:
            return {"message": "server is not draining"}
        if self._drain_task is not None:
            self._drain_task.cancel()
            self._drain_task = None
        self.draining = False
        self.exit_after_drain = False
        self.drain_started_at = self.drain_deadline = None
        self.hub.touch_server()
        if self.on_undrained is not None:
            self.on_undrained()
        self.events.add("server_undrain", "server drain cancelled; accepting requests")
        return {"message": "server is accepting requests again"}

    # ---- slots and the wait queue ---------------------------------------------------------

    def _check_model(self, model: str) -> None:
        known = self.registry.knows_model(model, self.config.model_family_matching)
        if not known and not self.backends.knows_model(model):
            raise ModelNotFoundError(f"The model {model!r} does not exist or has no worker")

    async def acquire(
        self, model: str, exclude: frozenset[str] = frozenset(), *, deadline: float | None = None
    ) -> WorkerRecord:
        """Reserve a slot on a worker for `model`, waiting in the FIFO queue if all are busy.

        The wait ends at `llm.queue_timeout` (503 queue_timeout) or at the request's own
        `deadline` (a `time.monotonic()` value; 504 request_timeout), whichever comes first.
        """
        if self.draining:
            raise DrainingError("server is draining; not accepting new requests")
        self._check_model(model)
        wait = self.config.queue_timeout
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._deadline_error()
            wait = min(wait, remaining)
        worker = self.scheduler.pick(model, exclude)
        if worker is None and exclude and not self._has_alternative(model, exclude):
            exclude = frozenset()
            worker = self.scheduler.pick(model)
        if worker is not None:
            self._touch_worker(worker)
            return worker
        if len(self._waiters) >= self.config.queue_size:
            raise QueueFullError(
                f"all workers for {model!r} are busy and the queue is full "
                f"({self.config.queue_size}); retry later"
            )
        waiter = _Waiter(model, exclude, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        self._derived_dirty = True
        try:
            worker = await asyncio.wait_for(asyncio.shield(waiter.future), timeout=wait)
        except TimeoutError:
            self._give_back_if_granted(waiter)
            if wait < self.config.queue_timeout:  # the request's deadline came first
                raise self._deadline_error() from None
            raise QueueTimeoutError(
                f"no worker for {model!r} became free within {wait:g}s; retry later"
            ) from None
        except asyncio.CancelledError:  # the client went away while it waited
            self._give_back_if_granted(waiter)
            raise
        finally:
            if not waiter.future.done():
                waiter.future.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            self._derived_dirty = True
        self.metrics.queue_wait.observe(time.monotonic() - waiter.enqueued)
        return worker

    def _give_back_if_granted(self, waiter: _Waiter) -> None:
        """A slot granted at the moment the waiter gave up goes back to the pool."""
        future = waiter.future
        if future.done() and not future.cancelled() and future.exception() is None:
            self._free_slot(future.result())

    def _free_slot(self, worker: WorkerRecord) -> None:
        self.scheduler.release(worker)
        self._touch_worker(worker)
        self._pump_queue()

    def _has_alternative(self, model: str, exclude: frozenset[str]) -> bool:
        keys = ["m:" + model]
        if self.config.model_family_matching:
            keys.append("f:" + model_family(model))
        return any(wid not in exclude for key in keys for wid in self.scheduler.members(key))

    def _pump_queue(self) -> None:
        """Hand freed slots to waiters in FIFO order (skipping models with no free slot)."""
        if not self._waiters:
            return
        starved: set[str] = set()
        for waiter in list(self._waiters):
            if waiter.future.done():
                self._waiters.remove(waiter)
                continue
            if waiter.model in starved:
                continue
            worker = self.scheduler.pick(waiter.model, waiter.exclude)
            if worker is None:
                if not waiter.exclude:
                    starved.add(waiter.model)
                continue
            self._touch_worker(worker)
            waiter.future.set_result(worker)
            self._waiters.remove(waiter)
        self._derived_dirty = True

    def _assign(self, job: Job, worker: WorkerRecord, assignment_id: str) -> Assignment:
        assignment = Assignment(assignment_id, job, worker)
        self._assignments[assignment_id] = assignment
        job.assignments[assignment_id] = assignment
        worker.assignments.add(assignment_id)
        backend_id = getattr(worker, "backend_id", None)
        if backend_id is not None:  # a backend, not a connected worker (gateway/backends.py)
            job.backend = backend_id
        else:
            if worker.id not in job.workers:
                job.workers.append(worker.id)
            job.worker = worker.id
        job.state = "running" if job.cancel_reason is None else job.state
        self._touch_job(job)
        return assignment

    def _release(self, assignment: Assignment) -> None:
        """Free the worker slot and forget the assignment (idempotent)."""
        self._assignments.pop(assignment.id, None)
        assignment.job.assignments.pop(assignment.id, None)
        if assignment.released:
            return
        assignment.released = True
        worker = assignment.worker
        worker.assignments.discard(assignment.id)
        if worker.gone_at is None:
            self.scheduler.release(worker)
            self._touch_worker(worker)
            if worker.counters.draining and worker.inflight == 0:
                self.events.add("drained", f"worker {worker.id} drained", worker_id=worker.id)
        self._pump_queue()

    async def _send_job(self, assignment: Assignment, frame: dict[str, Any]) -> None:
        conn = assignment.worker.conn
        if conn is None:
            assignment.queue.put_nowait(WorkerLost("worker connection closed"))
            return
        try:
            await conn.send(frame)
        except Exception as exc:  # the reader side will notice the broken connection too
            assignment.queue.put_nowait(WorkerLost(f"send failed: {exc}"))

    def _cancel_on_worker(self, assignment: Assignment, reason: str) -> None:
        if assignment.worker.conn is not None and not assignment.released:
            self._notify_worker(
                assignment.worker, CancelFrame(job_id=assignment.id, reason=reason).model_dump()
            )

    def _account(
        self,
        assignment: Assignment,
        ok: bool,
        *,
        tokens_in: int = 0,
        tokens_out: int = 0,
        embeddings: int = 0,
        error: str | None = None,
    ) -> None:
        """Per-worker counters and metrics for one finished assignment."""
        worker, job = assignment.worker, assignment.job
        seconds = time.monotonic() - assignment.started
        c = worker.counters
        per_model = c.model(assignment.model)
        per_model.requests += 1
        if ok:
            c.processed += 1
            c.processing_seconds += seconds
        else:
            c.failures += 1
            per_model.failures += 1
            c.last_error = error
            c.last_error_at = time.time()
        c.tokens_in += tokens_in
        c.tokens_out += tokens_out
        c.embeddings += embeddings
        per_model.tokens_in += tokens_in
        per_model.tokens_out += tokens_out
        per_model.embeddings += embeddings
        self.metrics.worker_finished(
            worker.id, job.kind, seconds, ok, tokens_in, tokens_out, embeddings
        )
        self._touch_worker(worker)

    # ---- jobs -----------------------------------------------------------------------------

    def _refuse_if_draining(self) -> None:
        if self.draining:
            raise DrainingError("server is draining; not accepting new requests")

    def _new_job(self, kind: str, model: str, stream: bool, client: str | None) -> Job:
        self._refuse_if_draining()
        job = Job(id=new_job_id(kind), kind=kind, model=model, stream=stream, client=client)
        job.deadline = time.monotonic() + self.config.request_timeout  # one for the request
        self.jobs[job.id] = job
        self._touch_job(job)
        self.hub.touch_server()
        return job

    def _end_job(self, job: Job, ok: bool, *, embeddings: int = 0) -> None:
        if self.jobs.pop(job.id, None) is None:
            return
        for assignment in list(job.assignments.values()):
            self._cancel_on_worker(assignment, "job ended")
            self._release(assignment)
        self.totals.requests += 1
        self.totals.tokens_in += job.tokens_in
        self.totals.tokens_out += job.tokens_out
        self.totals.embeddings += embeddings
        self.metrics.job_finished(
            job.model,
            job.kind,
            time.time() - job.started_at,
            ok,
            job.tokens_in,
            job.tokens_out,
            embeddings,
        )
        self._touch_job(job)
        self.hub.touch_server()

    def _deadline_error(self, worker: WorkerRecord | None = None) -> UpstreamTimeoutError:
        limit = f"the request timeout ({self.config.request_timeout:g}s)"
        if worker is None:
            return UpstreamTimeoutError(f"no worker took the request within {limit}")
        return UpstreamTimeoutError(f"worker {worker.id} did not finish within {limit}")

    async def _next_frame(self, assignment: Assignment) -> Any:
        """The next frame for an assignment; raises for lost worker, cancel and the end of the
        request's deadline (`job.deadline`: one for the whole request, not one per frame)."""
        remaining = max(assignment.job.deadline - time.monotonic(), 0.0)
        try:
            async with asyncio.timeout(remaining):  # no extra task per frame, unlike wait_for
                item = await assignment.queue.get()
        except TimeoutError:
            error = self._deadline_error(assignment.worker)
            self._cancel_on_worker(assignment, "request timeout")
            self._account(assignment, False, error=error.message)
            self._release(assignment)
            raise error from None
        if isinstance(item, WorkerLost):
            self._account(assignment, False, error=f"worker lost: {item.reason}")
            raise WorkerLostError(f"worker {assignment.worker.id} was lost: {item.reason}")
        if isinstance(item, Cancelled):
            self._cancel_on_worker(assignment, item.reason)
            self._release(assignment)
            raise JobCancelledError(f"job {assignment.job.id} {item.reason}")
        if isinstance(item, ErrorFrame):
            self._account(assignment, False, error=item.message)
            self._release(assignment)
            if item.retryable or item.code in RETRYABLE_CODES:
                raise WorkerLostError(
                    f"worker {assignment.worker.id} refused the job: {item.message}"
                )
            raise WorkerJobError(item.message, status=item.status, code=item.code or "worker_error")
        if isinstance(item, ResultFrame):
            self._release(assignment)  # the worker is done with it: no cancel at job end
        return item

    async def chat(
        self, body: dict[str, Any], *, client: str | None = None
    ) -> tuple[Job, dict[str, Any] | AsyncIterator[bytes]]:
        """Run a chat completion. Returns the response body, or an SSE byte stream.

        Errors that happen before the first byte (unknown model, queue full, draining)
        raise, so the HTTP layer can answer with a proper status code.
        """
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequestError("'model' is required and must be a string")
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            raise BadRequestError("'messages' must be a non-empty list")
        stream = bool(body.get("stream"))
        self._refuse_if_draining()  # before the model lookup: an unknown model is 503 too
        self._check_model(model)
        job = self._new_job("chat", model, stream, client)
        try:
            assignment = await self._start_chat(job, body, frozenset())
        except BaseException:
            self._end_job(job, False)
            raise
        if stream:
            return job, self._stream_chat(job, body, assignment)
        return job, await self._finish_chat(job, body, assignment)

    async def _start_chat(
        self, job: Job, body: dict[str, Any], exclude: frozenset[str]
    ) -> Assignment:
        worker = await self.acquire(job.model, exclude, deadline=job.deadline)
        assignment_id = job.id if job.attempt == 1 else f"{job.id}.{job.attempt}"
        assignment = self._assign(job, worker, assignment_id)
        model = worker.concrete_model(job.model)
        frame = job_frame(
            assignment_id,
            "chat",
            model,
            job.stream,
            body if model == body.get("model") else {**body, "model": model},
        )
        await self._send_job(assignment, frame)
        return assignment

    async def _finish_chat(
        self, job: Job, body: dict[str, Any], assignment: Assignment
    ) -> dict[str, Any]:
        ok = False
        try:
            while True:
                try:
                    item = await self._next_frame(assignment)
                except WorkerLostError:
                    if job.attempt > 1:
                        raise
                    job.attempt += 1
                    self._release(assignment)
                    lost = assignment.worker.id
                    self.events.add(
                        "retry", f"job {job.id} retried after worker {lost} was lost", job_id=job.id
                    )
                    assignment = await self._start_chat(job, body, frozenset({lost}))
                    continue
                if isinstance(item, ResultFrame):
                    data = item.data or {}
                    usage = item.usage.model_dump() if item.usage else data.get("usage") or {}
                    job.tokens_in = int(usage.get("prompt_tokens", 0) or 0)
                    job.tokens_out = int(usage.get("completion_tokens", 0) or 0)
                    self._account(
                        assignment, True, tokens_in=job.tokens_in, tokens_out=job.tokens_out
                    )
                    ok = True
                    return data
                if isinstance(item, ChunkFrame):
                    job.tokens_out += item.tokens
                    self._touch_job(job)
        finally:
            self._end_job(job, ok)

    async def _stream_chat(
        self, job: Job, body: dict[str, Any], assignment: Assignment
    ) -> AsyncIterator[bytes]:
        ok = False
        sent_any = False
        wants_usage = _wants_stream_usage(body)
        last_chunk: dict[str, Any] = {}
        try:
            while True:
                try:
                    item = await self._next_frame(assignment)
                except WorkerLostError as exc:
                    if sent_any or job.attempt > 1:
                        yield _sse_error(exc)
                        return
                    job.attempt += 1
                    self._release(assignment)
                    assignment = await self._start_chat(
                        job, body, frozenset({assignment.worker.id})
                    )
                    continue
                except GatewayError as exc:
                    yield _sse_error(exc)
                    return
                if isinstance(item, ChunkFrame):
                    sent_any = True
                    last_chunk = item.data
                    job.tokens_out += item.tokens
                    self._touch_job(job)
                    yield b"data: " + encode(item.data).encode() + b"\n\n"
                elif isinstance(item, ResultFrame):
                    usage = item.usage.model_dump() if item.usage else {}
                    job.tokens_in = int(usage.get("prompt_tokens", 0) or 0)
                    job.tokens_out = int(usage.get("completion_tokens", 0) or job.tokens_out)
                    self._account(
                        assignment, True, tokens_in=job.tokens_in, tokens_out=job.tokens_out
                    )
                    ok = True
                    data = item.data
                    if wants_usage and not (data and data.get("usage")):
                        # Workers fold the usage-only chunk into the result frame's usage; the
                        # client asked for it (stream_options.include_usage), so it gets one.
                        data = _usage_chunk(last_chunk, job, usage.get("total_tokens"))
                    if data:
                        yield b"data: " + encode(data).encode() + b"\n\n"
                    yield b"data: [DONE]\n\n"
                    return
        except GatewayError as exc:  # a failed retry start (queue full, timeout)
            yield _sse_error(exc)
        finally:
            if not ok and job.cancel_reason is None:
                for a in list(job.assignments.values()):
                    self._cancel_on_worker(a, "client went away")
            self._end_job(job, ok)

    # ---- embeddings -----------------------------------------------------------------------

    async def embeddings(
        self, body: dict[str, Any], *, client: str | None = None
    ) -> dict[str, Any]:
        """Split the inputs across workers by their batch size and reassemble in order."""
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequestError("'model' is required and must be a string")
        inputs = _embedding_inputs(body.get("input"))
        self._refuse_if_draining()
        self._check_model(model)
        job = self._new_job("embeddings", model, False, client)
        total = len(inputs)
        job.partition = {
            "total_items": total,
            "done_items": 0,
            "chunks_done": 0,
            "chunks_inflight": 0,
            "chunks_failed": 0,
        }
        run = _PartitionRun(total)
        results: list[Any] = [None] * total
        ok = False
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self.config.max_parallel_embeddings, total)):
                    group.create_task(self._embedding_runner(job, body, inputs, results, run))
            ok = True
        except* GatewayError as group_error:
            raise group_error.exceptions[0] from None
        finally:
            self._end_job(job, ok, embeddings=total if ok else 0)
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": vector}
                for i, vector in enumerate(results)
            ],
            "model": model,
            "usage": {"prompt_tokens": job.tokens_in, "total_tokens": job.tokens_in},
        }

    async def _embedding_runner(
        self,
        job: Job,
        body: dict[str, Any],
        inputs: list[Any],
        results: list[Any],
        run: _PartitionRun,
    ) -> None:
        partition = job.partition
        assert partition is not None
        attempts_allowed = self.config.embedding_chunk_attempts
        while True:
            if job.cancel_reason is not None:
                raise JobCancelledError(f"job {job.id} {job.cancel_reason}")
            if run.retry:
                start, count, attempts, excluded = run.retry.popleft()
            elif run.next_start < run.total:
                start, count, attempts, excluded = -1, 0, 0, frozenset()
            elif run.done >= run.total:
                return
            else:
                run.changed.clear()
                await run.changed.wait()
                continue
            worker = await self.acquire(job.model, excluded, deadline=job.deadline)
            if start < 0:
                if run.next_start >= run.total:  # another runner claimed the rest meanwhile
                    self._free_slot(worker)
                    continue
                start = run.next_start
                count = min(worker.preferred_batch_size, run.total - start)
                run.next_start += count
            run.chunk_seq += 1
            assignment = self._assign(job, worker, f"{job.id}.c{run.chunk_seq}")
            partition["chunks_inflight"] += 1
            self._touch_job(job)
            model = worker.concrete_model(job.model)
            chunk_body = dict(body, input=inputs[start : start + count], model=model)
            frame = job_frame(assignment.id, "embeddings", model, False, chunk_body)
            try:
                await self._send_job(assignment, frame)
                vectors, tokens = await self._embedding_result(assignment, count)
            except (WorkerLostError, WorkerJobError) as exc:
                partition["chunks_failed"] += 1
                attempts += 1
                if attempts >= attempts_allowed:
                    raise WorkerJobError(
                        f"embeddings chunk {start}..{start + count - 1} failed {attempts} time(s); "
                        f"last error: {exc.message}",
                        status=502,
                    ) from None
                run.retry.append((start, count, attempts, excluded | {worker.id}))
                self.events.add(
                    "retry",
                    f"job {job.id} chunk {start}+{count} failed on {worker.id}, retrying elsewhere",
                    level="warning",
                    job_id=job.id,
                )
            else:
                results[start : start + count] = vectors
                job.tokens_in += tokens
                partition["done_items"] += count
                partition["chunks_done"] += 1
                run.done += count
                self._account(assignment, True, tokens_in=tokens, embeddings=count)
            finally:
                partition["chunks_inflight"] -= 1
                # Still assigned means no answer came: the client left, another chunk failed
                # for good (the task group cancelled this runner) or the job was cancelled.
                # Tell the worker before freeing its slot, or it computes on for nothing.
                self._cancel_on_worker(assignment, job.cancel_reason or "request ended")
                self._release(assignment)
                self._touch_job(job)
                run.changed.set()

    async def _embedding_result(self, assignment: Assignment, count: int) -> tuple[list[Any], int]:
        while True:
            item = await self._next_frame(assignment)
            if not isinstance(item, ResultFrame):
                continue
            data = (item.data or {}).get("data")
            if not isinstance(data, list) or len(data) != count:
                got = len(data) if isinstance(data, list) else "no"
                self._account(assignment, False, error=f"bad embeddings result: {got} vectors")
                raise WorkerJobError(
                    f"worker returned {got} vectors for {count} inputs", status=502
                )
            ordered = sorted(data, key=lambda d: d.get("index", 0) if isinstance(d, dict) else 0)
            vectors = [d.get("embedding") if isinstance(d, dict) else None for d in ordered]
            usage = item.usage.model_dump() if item.usage else (item.data or {}).get("usage") or {}
            return vectors, int(usage.get("prompt_tokens", 0) or 0)


@dataclass
class _PartitionRun:
    total: int
    next_start: int = 0
    done: int = 0
    chunk_seq: int = 0
    retry: deque[tuple[int, int, int, frozenset[str]]] = field(default_factory=deque)
    changed: asyncio.Event = field(default_factory=asyncio.Event)


def job_frame(
    job_id: str, kind: str, model: str, stream: bool, body: dict[str, Any]
) -> dict[str, Any]:
    """A `JobFrame` as the dict that goes on the wire (built directly: this is the hot path;
    tests check it validates against the schema model)."""
    return {
        "type": "job",
        "job_id": job_id,
        "kind": kind,
        "model": model,
        "stream": stream,
        "body": body,
    }


def _embedding_inputs(value: Any) -> list[Any]:
    """OpenAI accepts a string, a list of strings, a token list, or a list of token lists."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, int) for v in value):
            return [value]
        if all(
            isinstance(v, str) or (isinstance(v, list) and all(isinstance(t, int) for t in v))
            for v in value
        ):
            return list(value)
    raise BadRequestError("'input' must be a non-empty string, list of strings or token lists")


def _wants_stream_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def _usage_chunk(last_chunk: dict[str, Any], job: Job, total: Any) -> dict[str, Any]:
    """The final usage-only chunk of an OpenAI stream (`choices: []`), with the stream's
    id, created and model taken from its last chunk."""
    return {
        "id": last_chunk.get("id") or f"chatcmpl-{job.id}",
        "object": "chat.completion.chunk",
        "created": last_chunk.get("created") or int(job.started_at),
        "model": last_chunk.get("model") or job.model,
        "choices": [],
        "usage": {
            "prompt_tokens": job.tokens_in,
            "completion_tokens": job.tokens_out,
            "total_tokens": int(total or 0) or job.tokens_in + job.tokens_out,
        },
    }


def _sse_error(exc: GatewayError) -> bytes:
    return b"data: " + encode(exc.body()).encode() + b"\n\n"
