"""The gateway core, wired from its parts: a thin facade so the routes, the server and
the tests have one object to hold.

- `live.LiveState`: the state hub, the server row, readiness, the per-model summary
- `roster.WorkerRoster`: workers connecting, reporting, draining, being evicted
- `slots.SlotQueue`: worker slots and the FIFO wait queue
- `dispatch.Dispatcher`: jobs, assignments, frames back, accounting, cancel
- `chat.ChatPath` and `embeddings.EmbeddingsPath`: the two request kinds
- `drain.ServerDrain`: draining the whole server (and exiting after)
- `backends.BackendManager` and `mcp.MCPRelays`: backends and MCP relays

Everything runs on one asyncio loop, so each synchronous stretch is atomic: a pick and its
slot reservation, a status change and the marks that tell the state hub about it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections import deque
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

import gatewaytui
from gatewaytui.gateway.backends.host import BackendHost
from gatewaytui.gateway.backends.manager import BackendManager
from gatewaytui.gateway.chat import ChatPath
from gatewaytui.gateway.config import GatewayConfig
from gatewaytui.gateway.dispatch import Dispatcher
from gatewaytui.gateway.drain import DrainState, ServerDrain
from gatewaytui.gateway.embeddings import EmbeddingsPath
from gatewaytui.gateway.events import EventLog
from gatewaytui.gateway.history.recorder import HistoryRecorder
from gatewaytui.gateway.jobs import Job, JobTable, Totals
from gatewaytui.gateway.live import LiveState
from gatewaytui.gateway.mcp.relays import MCPRelays
from gatewaytui.gateway.metrics import GatewayMetrics
from gatewaytui.gateway.registry import (
    WorkerConnection,
    WorkerRecord,
    WorkerRegistry,
    model_family,
)
from gatewaytui.gateway.roster import WorkerRoster
from gatewaytui.gateway.scheduler import Scheduler
from gatewaytui.gateway.slots import SlotQueue
from gatewaytui.gateway.worker_logs import WorkerLogBroker
from gatewaytui.schema import ServerStatus
from gatewaytui.schema.api import ActionResult
from gatewaytui.schema.protocol import RegisterFrame

if TYPE_CHECKING:
    from gatewaytui.gateway.cluster.node import ClusterNode


class Gateway:
    """Owns all live state through its parts; HTTP and WebSocket handlers are thin shells
    around it. Each method here delegates to the part that does the work."""

    def __init__(self, config: GatewayConfig | None = None) -> None:
        self.config = c = config or GatewayConfig.build()
        self.registry = WorkerRegistry()
        self.scheduler = Scheduler(c.scheduler, c.model_family_matching)
        self.table = JobTable()
        self.drain_state = DrainState()
        self.live = LiveState(
            c,
            self.registry,
            self.table,
            deque(),
            self.drain_state,
            started_at=time.time(),
            listen=f"{c.host}:{c.port}",
        )
        self.hub = self.live.hub
        self.events = EventLog(c.event_log_size, on_event=self.hub.add_event)
        self.metrics = GatewayMetrics(self.live.metrics_view, per_worker=c.metrics_per_worker)
        self.mcp = MCPRelays(c, self.hub, self.events, self.metrics.registry, self._draining)
        self._wire_job_path()
        self.backends = BackendManager(  # loads the store: BackendStoreError if broken
            BackendHost(
                config=c,
                hub=self.hub,
                events=self.events,
                scheduler=self.scheduler,
                worker_knows_model=self._worker_knows_model,
                worker_frame=self.roster.frame,
                touch_worker=self.live.touch_worker,
                pump_queue=self.queue.pump,
            )
        )
        self.live.backends = self.backends
        # The usage ledger: one hook per ended request.
        self.history = HistoryRecorder(c, self.events, self.metrics.registry)
        self.dispatch.on_job_end = self.history.job_ended
        self.dispatch.on_refused = self.history.request_refused
        self.mcp.on_call_end = self.history.mcp_call_ended
        self._tasks: list[asyncio.Task[Any]] = []
        self.cluster: ClusterNode | None = None
        if c.cluster_redis_url:
            from gatewaytui.gateway.cluster.node import ClusterNode  # only a fleet loads redis

            self.cluster = ClusterNode(self)

    def _wire_job_path(self) -> None:
        """The parts between a request and a worker: queue, dispatch, roster, drain, paths."""
        c = self.config
        self.queue = SlotQueue(
            c, self.scheduler, self.live, self.metrics, self.drain_state, self._knows_model
        )
        self.dispatch = Dispatcher(
            c,
            self.table,
            live=self.live,
            queue=self.queue,
            scheduler=self.scheduler,
            metrics=self.metrics,
            events=self.events,
            drain=self.drain_state,
        )
        self.dispatch.label_for = self._metric_label
        self.worker_logs = WorkerLogBroker()
        self.roster = WorkerRoster(
            c,
            self.registry,
            self.scheduler,
            live=self.live,
            queue=self.queue,
            dispatch=self.dispatch,
            metrics=self.metrics,
            events=self.events,
            worker_logs=self.worker_logs,
        )
        self.server_drain = ServerDrain(
            c,
            self.drain_state,
            hub=self.hub,
            events=self.events,
            jobs=self.table.jobs,
            waiters=self.queue.waiters,
            mcp_calls=lambda: len(self.mcp.calls),
        )
        self._chat = ChatPath(self.dispatch, self.queue, self.events, self.drain_state)
        self._embeddings = EmbeddingsPath(
            c, self.dispatch, self.queue, self.events, self.drain_state
        )

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self.hub.run(), name="state-hub"),
            asyncio.create_task(self.roster.sweeper().run(), name="worker-sweep"),
            asyncio.create_task(self.mcp.sweeper().run(), name="mcp-sweep"),
        ]
        await self.backends.start()
        await self.history.start()
        if self.cluster is not None:
            await self.cluster.start()
        self.events.add(
            "server_start", f"gateway {gatewaytui.__version__} listening on {self.listen}"
        )
        # Everything allocated so far lives as long as the process: keep full collections
        # from walking it (they showed up as the slowest scheduler picks).
        gc.freeze()

    async def stop(self) -> None:
        if self.cluster is not None:
            await self.cluster.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.backends.stop()
        await self.history.stop()
        self.server_drain.stop()

    # ---- what the parts share -------------------------------------------------------------

    def _draining(self) -> bool:
        return self.drain_state.draining

    def _worker_knows_model(self, model: str) -> bool:
        return self.registry.knows_model(model, self.config.model_family_matching)

    def _knows_model(self, model: str) -> bool:
        return self._worker_knows_model(model) or self.backends.knows_model(model)

    def _metric_label(self, model: str) -> str:
        """The name a job's metrics carry: the model when served by that name, else the
        served family it matched, so series come from what the gateway serves, never from
        what a client typed (`llama3:8b-x1`, `-x2`, … are all `llama3:8b`)."""
        if self.registry.knows_model(model, False) or self.backends.knows_model_exactly(model):
            return model
        return model_family(model)

    @property
    def started_at(self) -> float:
        return self.live.started_at

    @started_at.setter
    def started_at(self, value: float) -> None:
        self.live.started_at = value

    @property
    def listen(self) -> str:
        return self.live.listen

    @listen.setter
    def listen(self, value: str) -> None:
        self.live.listen = value

    @property
    def jobs(self) -> dict[str, Job]:
        return self.table.jobs

    @property
    def totals(self) -> Totals:
        return self.table.totals

    @property
    def draining(self) -> bool:
        return self.drain_state.draining

    # ---- state ----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The whole state, fresh (for `GET /api/state`)."""
        return self.hub.full_state(self.events.all())

    def readiness(self) -> tuple[ServerStatus, str | None]:
        return self.live.readiness()

    # ---- workers (the dial-in route's hooks) ----------------------------------------------

    def worker_registered(
        self, frame: RegisterFrame, conn: WorkerConnection, remote: str | None
    ) -> tuple[WorkerRecord, dict[str, Any]]:
        return self.roster.registered(frame, conn, remote)

    def worker_frame(self, worker: WorkerRecord, frame: Any) -> None:
        self.roster.frame(worker, frame)

    def worker_disconnected(
        self, worker: WorkerRecord, reason: str, *, evicted: bool = False, clean: bool = False
    ) -> None:
        self.roster.disconnected(worker, reason, evicted=evicted, clean=clean)

    # ---- operator actions -----------------------------------------------------------------

    def drain_worker(self, worker_id: str) -> ActionResult:
        return self.roster.drain(worker_id)

    def undrain_worker(self, worker_id: str) -> ActionResult:
        return self.roster.undrain(worker_id)

    def cancel_job(self, job_id: str, reason: str = "cancelled by operator") -> ActionResult:
        return self.dispatch.cancel_job(job_id, reason)

    def drain_server(
        self, timeout: float | None = None, *, exit_when_done: bool = False
    ) -> ActionResult:
        return self.server_drain.drain(timeout, exit_when_done=exit_when_done)

    def undrain_server(self) -> ActionResult:
        return self.server_drain.undrain()

    def begin_exit_drain(self) -> None:
        """SIGTERM: drain (if not already) and exit once drained."""
        self.server_drain.begin_exit_drain()

    # ---- requests -------------------------------------------------------------------------

    async def chat(
        self, body: dict[str, Any], *, client: str | None = None, key: str | None = None
    ) -> tuple[Job, dict[str, Any] | AsyncGenerator[bytes, None]]:
        return await self._chat.chat(body, client=client, key=key)

    async def embeddings(
        self, body: dict[str, Any], *, client: str | None = None, key: str | None = None
    ) -> dict[str, Any] | bytes:
        return await self._embeddings.embeddings(body, client=client, key=key)
