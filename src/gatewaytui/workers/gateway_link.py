"""One worker connection: dial the gateway, register, heartbeat, run jobs, reconnect, drain.

`WorkerClient` speaks the worker protocol over the connection loop it shares with the MCP
relay (`dial_out.DialOutClient`); a `JobHandler` answers the jobs. Many clients can share one
handler and one event loop (a simulated fleet), so a client costs two idle tasks and a timer
while connected — no polling.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from gatewaytui import __version__
from gatewaytui.schema.protocol import (
    CLOSE_DUPLICATE_ID,
    CLOSE_EVICTED,
    CLOSE_POLICY_VIOLATION,
    CLOSE_SERVER_SHUTDOWN,
    FEATURE_ACCEPTED,
    FEATURE_CHUNKS,
    FEATURE_LOGS,
    FEATURE_RAW_RESULTS,
    GATEWAY_FRAME_ADAPTER,
    CancelFrame,
    ChunkFrame,
    DrainFrame,
    ErrorFrame,
    HeartbeatFrame,
    JobFrame,
    LogsFrame,
    LogsRequestFrame,
    LogsStopFrame,
    RegisteredFrame,
    RegisterFrame,
    ResultFrame,
    StatusFrame,
    Usage,
)
from gatewaytui.shared import codec
from gatewaytui.shared.text import plural
from gatewaytui.workers.dial_out import (
    DialOutClient,
    DialOutSettings,
    GatewayProtocolError,
    SessionEnd,
    invalid_frame,
    wire_logger,
)
from gatewaytui.workers.gpu import FakeGpus, process_reader
from gatewaytui.workers.hostinfo import LOAD_SAMPLER, host_info
from gatewaytui.workers.job_handler import (
    MAX_REASON_CHARS,
    ChunkSink,
    JobError,
    JobHandler,
    RawChunkSink,
)
from gatewaytui.workers.logbuffer import LogRing, LogStreams, process_ring
from gatewaytui.workers.settings import WorkerSettings, gateway_ws_url, redact_url

log = logging.getLogger("gatewaytui.workers.gateway_link")
_wire_log = wire_logger("gatewaytui.workers.wire")

WorkerProtocolError = GatewayProtocolError
"""The gateway broke the worker protocol (kept under the name the worker API has used)."""

DRAINING_REASON = "worker draining"

__all__ = ["DRAINING_REASON", "SessionEnd", "WorkerClient", "WorkerProtocolError"]


class WorkerClient(DialOutClient[RegisteredFrame]):
    """A worker that dials the gateway and serves jobs with `handler` until stopped.

    Observable state for tests and the CLI: `connected` (set while registered), `registered`
    (the gateway's answer), `idle` (set when no job is in flight), `stopped`, `sessions`.
    """

    kind = "worker"
    close_hints = {
        CLOSE_DUPLICATE_ID: "another worker with this id is connected; give each worker a "
        "unique id",
        CLOSE_POLICY_VIOLATION: "the gateway rejected a frame (policy violation)",
        CLOSE_EVICTED: "the gateway evicted this worker (missed heartbeats?)",
        CLOSE_SERVER_SHUTDOWN: "the gateway is shutting down",
    }

    def __init__(
        self,
        settings: WorkerSettings,
        handler: JobHandler,
        *,
        worker_id: str | None = None,
        name: str | None = None,
        rng: random.Random | None = None,
        log_ring: LogRing | None = None,
    ) -> None:
        worker_id = worker_id or settings.resolved_id()
        dial = DialOutSettings(
            url=gateway_ws_url(settings.gateway_url),
            key=settings.key,
            backoff=settings.backoff,
            user_agent="gatewaytui-worker",
            open_timeout_s=settings.open_timeout_s,
            register_timeout_s=settings.register_timeout_s,
            max_frame_bytes=settings.max_frame_bytes,
            compression=settings.compression,
            max_connect_failures=settings.max_connect_failures,
        )
        super().__init__(
            worker_id,
            dial,
            answers=GATEWAY_FRAME_ADAPTER,
            registered_type=RegisteredFrame,
            logger=log,
            wire_log=_wire_log,
            rng=rng,
        )
        self.settings = settings
        self.handler = handler
        self.name = name or settings.name or self.id
        # Validate the identity now: a bad id should fail at start-up, not at every connect.
        self._register_template = RegisterFrame(
            id=self.id,
            name=self.name,
            models=[],
            max_concurrency=settings.concurrency,
            preferred_batch_size=settings.batch_size,
            version=__version__,
            host=host_info(),
            labels=dict(settings.labels),
            features=[FEATURE_LOGS, FEATURE_ACCEPTED],
        )
        self.jobs_succeeded = 0
        self.jobs_failed = 0
        self.jobs_refused = 0
        upstream_key = settings.upstream.api_key if settings.upstream is not None else None
        self.log_ring = log_ring or process_ring((settings.key, upstream_key))
        self._log_streams: LogStreams | None = None
        simulate = settings.simulate
        self._gpus = (
            FakeGpus(simulate.gpus, simulate.gpu_mem_mb, self._load_share)
            if simulate is not None and simulate.gpus
            else process_reader()
            if simulate is None  # a simulated worker never reports the host's real GPUs
            else None
        )

    # ---- public control -----------------------------------------------------------------

    async def drain(self, timeout: float | None = None) -> None:
        """Drain itself (what SIGTERM does): tell the gateway, refuse new jobs, let the
        in-flight ones finish (cancelling them after `timeout`, default settings.drain_timeout_s),
        then close with 1000 and stop."""
        if self._stopping:
            await self._wait_task()
            return
        if not self._draining:
            self._draining = True
            log.info("worker %s: draining (%s in flight)", self.id, plural(self.inflight, "job"))
            await self._announce_status()
        limit = self.settings.drain_timeout_s if timeout is None else timeout
        jobs = list(self._tasks.values())
        if jobs:
            _, pending = await asyncio.wait(jobs, timeout=limit)
            if pending:
                log.warning(
                    "worker %s: drain timeout (%.1fs): cancelling %s",
                    self.id,
                    limit,
                    plural(len(pending), "job"),
                )
                await self._cancel_tasks(pending)
        if self._stopping:  # stop() took over while we waited
            await self._wait_task()
            return
        await self._shutdown(1000, "worker drained")

    # ---- the frames this client sends ---------------------------------------------------

    def _subscribe(self, changed: Callable[[], None]) -> Callable[[], None]:
        return self.handler.subscribe(changed)

    def _register_frame(self) -> RegisterFrame:
        return self._register_template.model_copy(update={"models": self.handler.models})

    def _on_registered(self, answer: RegisteredFrame) -> None:
        log.info(
            "worker %s: registered with %s (heartbeat %.1fs%s)",
            self.id,
            redact_url(self.url),
            answer.heartbeat_interval_s,
            ", gateway has this worker drained" if answer.draining else "",
        )

    async def _greet(self, ws: ClientConnection) -> None:
        await ws.send(self._status_frame().model_dump_json())

    async def _serve(self, ws: ClientConnection, registered: RegisteredFrame) -> None:
        async def send(frame: LogsFrame) -> bool:
            return await self._send(ws, frame)

        streams = self._log_streams = LogStreams(self.log_ring, self.id, send)
        try:
            await super()._serve(ws, registered)
        finally:
            self._log_streams = None
            await streams.close()

    def _heartbeat_frame(self) -> HeartbeatFrame:
        cpu, mem = LOAD_SAMPLER.sample()
        gpus = self._gpus.read() if self._gpus is not None else None
        return HeartbeatFrame(cpu_percent=cpu, mem_percent=mem, gpus=gpus)

    def _load_share(self) -> float:
        return self.inflight / self.settings.concurrency if self.settings.concurrency else 0.0

    def _status_frame(self) -> StatusFrame:
        reason: str | None
        if self._draining:
            ready, reason = False, DRAINING_REASON
        else:
            ready, reason = self.handler.ready, self.handler.reason
        return StatusFrame(
            ready=ready,
            reason=reason[:MAX_REASON_CHARS] if reason else reason,
            draining=self._draining,
            models=self.handler.models,
            max_concurrency=self.settings.concurrency,
        )

    # ---- frames from the gateway --------------------------------------------------------

    async def _dispatch(
        self, ws: ClientConnection, raw: str | bytes, registered: RegisteredFrame
    ) -> None:
        try:
            frame = GATEWAY_FRAME_ADAPTER.validate_json(raw)
        except ValidationError as exc:
            log.warning(
                "worker %s: ignoring a frame that does not parse: %s", self.id, invalid_frame(exc)
            )
            return
        if isinstance(frame, JobFrame):
            await self._accept_job(ws, frame, registered)
        elif isinstance(frame, CancelFrame):
            task = self._tasks.get(frame.job_id)
            if task is not None:
                log.info("worker %s: job %s cancelled by the gateway", self.id, frame.job_id)
                task.cancel()
        elif isinstance(frame, LogsRequestFrame):
            if self._log_streams is not None:
                await self._log_streams.request(frame)
        elif isinstance(frame, LogsStopFrame):
            if self._log_streams is not None:
                self._log_streams.stop(frame.request_id)
        elif isinstance(frame, DrainFrame):
            log.info(
                "worker %s: the gateway %s this worker",
                self.id,
                "drained" if frame.draining else "undrained",
            )
        else:
            log.debug("worker %s: ignoring an extra %s frame", self.id, frame.type)

    async def _accept_job(
        self, ws: ClientConnection, job: JobFrame, registered: RegisteredFrame
    ) -> None:
        refusal: JobError | None = None
        if self._stopping:
            return
        if job.job_id in self._tasks:
            log.warning("worker %s: ignoring duplicate job id %s", self.id, job.job_id)
            return
        if self._draining:
            refusal = JobError(503, "worker is draining", "draining")
        elif self.handler.models and job.model not in self.handler.models:
            refusal = JobError(404, f"model {job.model!r} is not served here", "model_not_found")
        elif not self.handler.ready:
            refusal = JobError(503, f"worker not ready: {self.handler.reason}", "not_ready")
        elif self.inflight >= self.settings.concurrency:
            refusal = JobError(
                503,
                f"worker at capacity ({plural(self.settings.concurrency, 'job')})",
                "over_capacity",
            )
        if refusal is not None:
            log.info("worker %s: refusing job %s: %s", self.id, job.job_id, refusal.message)
            self.jobs_refused += 1
            await self._send(ws, _error_frame(job.job_id, refusal))
            return
        self._track(job.job_id, self._run_job(ws, job, registered))

    async def _run_job(
        self, ws: ClientConnection, job: JobFrame, registered: RegisteredFrame
    ) -> None:
        async def emit(data: dict[str, Any], tokens: int) -> None:
            await ws.send(ChunkFrame(job_id=job.job_id, data=data, tokens=tokens).model_dump_json())

        async def emit_raw(chunks: list[str], tokens: int, usage: bool) -> None:
            # One frame (one send) for all the chunks that arrived together; their texts go
            # unchanged. Built directly: this is per read of a stream.
            frame: dict[str, Any] = {
                "type": "chunks",
                "job_id": job.job_id,
                "chunks": chunks,
                "tokens": tokens,
            }
            if usage:
                frame["usage"] = True
            await ws.send(codec.dumps_text(frame))

        try:
            if not job.stream and job.kind == "chat" and FEATURE_ACCEPTED in registered.features:
                # Its answer may take long: say at once that it runs (the gateway bounds this).
                await ws.send(codec.dumps_text({"type": "accepted", "job_id": job.job_id}))
            try:
                result = await self._answer(job, registered, emit, emit_raw)
            except JobError as exc:
                self.jobs_failed += 1
                log.info("worker %s: job %s failed: %s", self.id, job.job_id, exc.message)
                await ws.send(_error_frame(job.job_id, exc).model_dump_json())
                return
            except (asyncio.CancelledError, ConnectionClosed):
                raise
            except Exception as exc:
                self.jobs_failed += 1
                log.exception("worker %s: job %s crashed", self.id, job.job_id)
                error = JobError(500, f"worker error: {type(exc).__name__}: {exc}", "worker_error")
                await ws.send(_error_frame(job.job_id, error).model_dump_json())
                return
            await ws.send(result)
            self.jobs_succeeded += 1
        except ConnectionClosed:
            log.debug("worker %s: connection closed while job %s ran", self.id, job.job_id)

    async def _answer(
        self,
        job: JobFrame,
        registered: RegisteredFrame,
        emit: ChunkSink,
        emit_raw: RawChunkSink,
    ) -> str:
        """Run the job on the handler; its result frame (streams emit chunks meanwhile), in
        the forms this gateway accepts (`registered.features`)."""
        features, limit = registered.features, registered.max_frame_bytes
        if job.kind == "embeddings" and FEATURE_RAW_RESULTS in features:
            text, usage = await self.handler.embeddings_raw(job)
            return _raw_result_payload(job.job_id, text, usage, limit)
        if job.kind == "embeddings":
            data, usage = await self.handler.embeddings(job)
        elif job.stream and FEATURE_CHUNKS in features:
            data, usage = None, await self.handler.chat_stream_raw(job, emit_raw)
        elif job.stream:
            data, usage = None, await self.handler.chat_stream(job, emit)
        else:
            data, usage = await self.handler.chat(job)
        return _result_payload(job.job_id, data, usage, limit)


def _error_frame(job_id: str, error: JobError) -> ErrorFrame:
    return ErrorFrame(
        job_id=job_id, message=error.message[:4096], status=error.status, code=error.code
    )


def _raw_result_payload(job_id: str, text: str, usage: Usage, max_frame_bytes: int) -> str:
    """A result frame carrying the upstream's answer as text (`raw`), size-checked."""
    frame = {"type": "result", "job_id": job_id, "usage": usage.model_dump(), "raw": text}
    return _checked(codec.dumps_text(frame), max_frame_bytes)


def _result_payload(
    job_id: str, data: dict[str, Any] | None, usage: Usage | None, max_frame_bytes: int
) -> str:
    """The result frame as JSON, or a job error when it would exceed the gateway's limit."""
    payload = ResultFrame(job_id=job_id, data=data, usage=usage).model_dump_json()
    return _checked(payload, max_frame_bytes)


def _checked(payload: str, max_frame_bytes: int) -> str:
    size = len(payload.encode("utf-8"))
    if max_frame_bytes > 0 and size > max_frame_bytes:
        raise JobError(
            502,
            f"result of {size} bytes exceeds the gateway's max frame size ({max_frame_bytes})",
            "frame_too_large",
        )
    return payload
