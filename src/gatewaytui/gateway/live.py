"""The live state the panel sees: the hub's collections (workers, jobs, models, plugins,
and the backends that add theirs), the server row, readiness, and the per-model summary
derived from workers, jobs and the queue."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import gatewaytui
from gatewaytui.gateway.clock import iso
from gatewaytui.gateway.config import GatewayConfig
from gatewaytui.gateway.drain import DrainState
from gatewaytui.gateway.hub import Collection, StateHub
from gatewaytui.gateway.jobs import Job, JobTable
from gatewaytui.gateway.registry import WorkerRecord, WorkerRegistry
from gatewaytui.schema import ModelSummary, ServerStatus, WorkerStatus

if TYPE_CHECKING:
    from gatewaytui.gateway.jobs import Waiter

SERVING = frozenset({WorkerStatus.CONNECTED, WorkerStatus.IDLE, WorkerStatus.WORKING})


def _single_node() -> dict[str, Any]:
    return {"cluster": "off", "replica": None}


class BackendModels(Protocol):
    """What the live state needs from the backends."""

    def add_models(self, models: dict[str, dict[str, Any]]) -> None: ...

    def routable_count(self) -> int: ...


class _NoBackends:
    """Until the backends are attached (they need the hub to exist first)."""

    def add_models(self, models: dict[str, dict[str, Any]]) -> None:
        pass

    def routable_count(self) -> int:
        return 0


class LiveState:
    """Owns the state hub and what is derived for it; everything else marks it dirty."""

    def __init__(
        self,
        config: GatewayConfig,
        registry: WorkerRegistry,
        table: JobTable,
        waiters: deque[Waiter],
        drain: DrainState,
        *,
        started_at: float,
        listen: str,
    ) -> None:
        self.config = config
        self.registry = registry
        self.table = table
        self.waiters = waiters
        self.drain = drain
        self.started_at = started_at
        self.listen = listen
        self.backends: BackendModels = _NoBackends()
        # The server row's fleet fields (`cluster`, `replica`); a fleet replaces this.
        self.fleet_fields: Callable[[], dict[str, Any]] = _single_node
        self.models: dict[str, dict[str, Any]] = {}
        self.serving_workers = 0
        self._dirty = True
        self.plugins = {p.id: p.model_dump(mode="json") for p in config.options.describe()}
        self.hub = StateHub(
            {
                "workers": Collection(self._worker_item, self._all_workers),
                "jobs": Collection(self._job_item, self._all_jobs),
                "models": Collection(self.models.get, lambda: list(self.models.values())),
                "plugins": Collection(self.plugins.get, lambda: list(self.plugins.values())),
            },
            self.server_item,
            rate=config.state_stream_rate,
            keepalive=config.state_keepalive,
            event_log_size=config.event_log_size,
            before_flush=self.refresh_derived,
        )
        for plugin_id in self.plugins:
            self.hub.touch("plugins", plugin_id)

    # ---- marks ----------------------------------------------------------------------------

    def touch_worker(self, worker: WorkerRecord) -> None:
        """A worker's row changed, and with it perhaps capacity and readiness."""
        self.hub.touch("workers", worker.id)
        self._dirty = True

    def touch_job(self, job: Job) -> None:
        self.hub.touch("jobs", job.id)

    def mark_dirty(self) -> None:
        """The per-model summary needs a recount (queue or assignments moved)."""
        self._dirty = True

    # ---- items ----------------------------------------------------------------------------

    def _worker_item(self, worker_id: str) -> dict[str, Any] | None:
        worker = self.registry.get(worker_id)
        return worker.to_dict() if worker is not None else None

    def _all_workers(self) -> list[dict[str, Any]]:
        return [w.to_dict() for w in self.registry]

    def _job_item(self, job_id: str) -> dict[str, Any] | None:
        job = self.table.jobs.get(job_id)
        return job.to_dict() if job is not None else None

    def _all_jobs(self) -> list[dict[str, Any]]:
        return [j.to_dict() for j in self.table.jobs.values()]

    def server_item(self) -> dict[str, Any]:
        status, reason = self.readiness()
        drain, totals = self.drain, self.table.totals
        return {
            "version": gatewaytui.__version__,
            "status": status.value,
            "status_reason": reason,
            "started_at": iso(self.started_at),
            "listen": self.listen,
            "draining": drain.draining,
            "drain_started_at": iso(drain.started_at),
            "drain_deadline": iso(drain.deadline),
            "inflight": len(self.table.jobs),
            "queue": {"length": len(self.waiters), "capacity": self.config.queue_size},
            "scheduler": self.config.scheduler,
            "read_only": False,
            "requests_total": totals.requests,
            "tokens_in_total": totals.tokens_in,
            "tokens_out_total": totals.tokens_out,
            "embeddings_total": totals.embeddings,
            **self.fleet_fields(),
        }

    def readiness(self) -> tuple[ServerStatus, str | None]:
        if self.drain.draining:
            return ServerStatus.DRAINING, "server is draining"
        self.refresh_derived()
        if self.serving_workers == 0 and not self.backends.routable_count():
            return ServerStatus.NOT_READY, "no worker can take jobs"
        return ServerStatus.READY, None

    def metrics_view(self) -> dict[str, Any]:
        """The gauges `/metrics` reads at scrape time."""
        return {
            "inflight": len(self.table.jobs),
            "queue_length": len(self.waiters),
            "workers_by_status": Counter(w.status.value for w in self.registry),
            "draining": self.drain.draining,
            "subscribers": self.hub.subscriber_count,
            "resyncs": self.hub.resyncs,
        }

    # ---- the per-model summary ------------------------------------------------------------

    def refresh_derived(self) -> None:
        """Recompute per-model capacity and the serving count after workers changed."""
        if not self._dirty:
            return
        self._dirty = False
        models, serving = self._count_workers()
        self.backends.add_models(models)
        for assignment in self.table.assignments.values():
            m = models.get(assignment.model)
            if m is not None:
                m["inflight"] += 1
        for waiter in self.waiters:
            m = models.get(waiter.model)
            if m is not None:
                m["queued"] += 1
        for model_id in set(self.models) | set(models):
            self.hub.touch("models", model_id)
        self.models.clear()
        self.models.update(models)
        self.serving_workers = serving
        self.hub.touch_server()

    def _count_workers(self) -> tuple[dict[str, dict[str, Any]], int]:
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
        return models, serving
