"""One worker connection: dial the gateway, register, heartbeat, run jobs, reconnect, drain.

`WorkerClient` owns the WebSocket session and the reconnect loop; a `Backend` answers the
jobs. Many clients can share one backend and one event loop (a simulated fleet), so a client
costs two idle tasks and a timer while connected — no polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from pydantic import BaseModel, ValidationError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)

from gatewaytui import __version__
from gatewaytui.schema.protocol import (
    CLOSE_DUPLICATE_ID,
    CLOSE_EVICTED,
    CLOSE_POLICY_VIOLATION,
    CLOSE_SERVER_SHUTDOWN,
    GATEWAY_FRAME_ADAPTER,
    CancelFrame,
    ChunkFrame,
    DrainFrame,
    ErrorFrame,
    HeartbeatFrame,
    JobFrame,
    RegisteredFrame,
    RegisterFrame,
    ResultFrame,
    StatusFrame,
    Usage,
)
from gatewaytui.workers.backend import MAX_REASON_CHARS, Backend, JobError
from gatewaytui.workers.backoff import Backoff
from gatewaytui.workers.hostinfo import LOAD_SAMPLER, host_info
from gatewaytui.workers.settings import WorkerSettings, gateway_ws_url, redact_url

log = logging.getLogger("gatewaytui.workers.client")

# websockets logs handshake headers at DEBUG; give it our own logger and mask the key there.
_wire_log = logging.getLogger("gatewaytui.workers.wire")


class _RedactAuthorization(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 2 and str(args[0]).lower() == "authorization":
            record.args = (args[0], "<redacted>")
        return True


_wire_log.addFilter(_RedactAuthorization())

DRAINING_REASON = "worker draining"
_DEFAULT_HEARTBEAT_S = 5.0
_MIN_HEARTBEAT_S = 0.01
_FORCED_CLOSE_TIMEOUT_S = 1.0

_CLOSE_HINTS = {
    CLOSE_DUPLICATE_ID: "another worker with this id is connected; give each worker a unique id",
    CLOSE_POLICY_VIOLATION: "the gateway rejected a frame (policy violation)",
    CLOSE_EVICTED: "the gateway evicted this worker (missed heartbeats?)",
    CLOSE_SERVER_SHUTDOWN: "the gateway is shutting down",
}


class WorkerProtocolError(Exception):
    """The gateway said something the protocol does not allow (e.g. no `registered`)."""


@dataclass(slots=True)
class SessionEnd:
    """How one connection attempt ended, for logs, backoff and tests."""

    registered: bool
    duration_s: float
    code: int | None = None
    reason: str = ""
    error: str | None = None


class WorkerClient:
    """A worker that dials the gateway and serves jobs with `backend` until stopped.

    Observable state for tests and the CLI: `connected` (set while registered), `registered`
    (the gateway's answer), `idle` (set when no job is in flight), `stopped`, `sessions`.
    """

    def __init__(
        self,
        settings: WorkerSettings,
        backend: Backend,
        *,
        worker_id: str | None = None,
        name: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.id = worker_id or settings.resolved_id()
        self.name = name or settings.name or self.id
        self.url = gateway_ws_url(settings.gateway_url)
        self._rng = rng or random.Random()
        self.backoff = Backoff(settings.backoff.base_s, settings.backoff.cap_s, self._rng)
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
        )

        self.connected = asyncio.Event()
        self.stopped = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self.registered: RegisteredFrame | None = None
        self.sessions: deque[SessionEnd] = deque(maxlen=64)
        self.connect_attempts = 0
        self.jobs_succeeded = 0
        self.jobs_failed = 0
        self.jobs_refused = 0
        self.last_delay_s: float | None = None
        self.exit_code = 0

        self._ws: ClientConnection | None = None
        self._jobs: dict[str, asyncio.Task[None]] = {}
        self._draining = False
        self._stopping = False
        self._wakeup = asyncio.Event()
        self._status_dirty = asyncio.Event()
        self._task: asyncio.Task[int] | None = None

    def __repr__(self) -> str:
        return f"WorkerClient(id={self.id!r}, url={redact_url(self.url)!r})"

    # ---- public control -----------------------------------------------------------------

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def inflight(self) -> int:
        return len(self._jobs)

    async def start(self) -> None:
        """Start the connect/reconnect loop in the background and return at once."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"worker:{self.id}")

    async def wait(self) -> int:
        """Wait until the worker has stopped; returns its exit code."""
        if self._task is None:
            raise RuntimeError("WorkerClient.start() was not called")
        return await asyncio.shield(self._task)

    async def drain(self, timeout: float | None = None) -> None:
        """Drain itself (what SIGTERM does): tell the gateway, refuse new jobs, let the
        in-flight ones finish (cancelling them after `timeout`, default settings.drain_timeout_s),
        then close with 1000 and stop."""
        if self._stopping:
            await self._wait_task()
            return
        if not self._draining:
            self._draining = True
            log.info("worker %s: draining (%d job(s) in flight)", self.id, self.inflight)
            ws = self._ws
            if ws is not None and self.connected.is_set():
                await self._send(ws, self._status_frame())
        limit = self.settings.drain_timeout_s if timeout is None else timeout
        jobs = list(self._jobs.values())
        if jobs:
            _, pending = await asyncio.wait(jobs, timeout=limit)
            if pending:
                log.warning(
                    "worker %s: drain timeout (%.1fs): cancelling %d job(s)",
                    self.id,
                    limit,
                    len(pending),
                )
                await self._cancel_jobs(pending)
        if self._stopping:  # stop() took over while we waited
            await self._wait_task()
            return
        await self._shutdown(1000, "worker drained")

    async def stop(self) -> None:
        """Stop now: cancel in-flight jobs and close with 1001 (the gateway retries them)."""
        self._stopping = True
        await self._cancel_jobs(list(self._jobs.values()))
        await self._shutdown(1001, "worker stopping", timeout=_FORCED_CLOSE_TIMEOUT_S)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _shutdown(self, code: int, reason: str, timeout: float | None = None) -> None:
        self._stopping = True
        self._wakeup.set()
        ws = self._ws
        if ws is not None:
            try:
                async with asyncio.timeout(timeout):
                    await ws.close(code, reason)
            except TimeoutError:
                log.warning("worker %s: close handshake timed out", self.id)
        await self._wait_task()

    async def _wait_task(self) -> None:
        if self._task is not None and self._task is not asyncio.current_task():
            await asyncio.shield(self._task)

    # ---- connect / reconnect loop -------------------------------------------------------

    async def run(self) -> int:
        """Connect, serve, and reconnect with backoff until stopped; returns an exit code."""
        unsubscribe = self.backend.subscribe(self._status_dirty.set)
        failures = 0
        try:
            while not self._stopping:
                self.connect_attempts += 1
                try:
                    end = await self._session()
                except InvalidURI as exc:
                    log.error("worker %s: bad gateway url: %s", self.id, exc)
                    self.exit_code = 2
                    break
                except Exception as exc:  # a bug must not end a long-running worker
                    log.exception("worker %s: unexpected error in the connection", self.id)
                    end = SessionEnd(registered=False, duration_s=0.0, error=repr(exc))
                self.sessions.append(end)
                if self._stopping or self._draining:
                    self._log_end(end, None)
                    break
                if end.registered:
                    failures = 0
                    if end.duration_s >= self.settings.backoff.stable_after_s:
                        self.backoff.reset()
                else:
                    failures += 1
                    limit = self.settings.max_connect_failures
                    if limit is not None and failures >= limit:
                        self._log_end(end, None)
                        log.error(
                            "worker %s: giving up after %d failed connection attempts",
                            self.id,
                            failures,
                        )
                        self.exit_code = 1
                        break
                delay = self.backoff.next_delay()
                self.last_delay_s = delay
                self._log_end(end, delay)
                self._wakeup.clear()
                if self._stopping:
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wakeup.wait()
        finally:
            unsubscribe()
            self.connected.clear()
            self.stopped.set()
        log.info("worker %s: stopped", self.id)
        return self.exit_code

    def _log_end(self, end: SessionEnd, delay: float | None) -> None:
        if self._stopping and end.error is None and end.code in (1000, 1001):
            return
        retry = f"; reconnecting in {delay:.2f}s" if delay is not None else ""
        if end.error is not None:
            log.warning(
                "worker %s: cannot connect to %s: %s%s", self.id, self._safe_url, end.error, retry
            )
            return
        hint = _CLOSE_HINTS.get(end.code or 0)
        log.warning(
            "worker %s: gateway closed the connection%s: code %s, reason %r%s%s",
            self.id,
            "" if end.registered else " during registration",
            end.code if end.code is not None else "none (connection lost)",
            end.reason,
            f" ({hint})" if hint else "",
            retry,
        )

    @property
    def _safe_url(self) -> str:
        return redact_url(self.url)

    async def _session(self) -> SessionEnd:
        """One connection: register, then serve until it closes. Never raises for I/O."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        registered_at: float | None = None
        headers = {"Authorization": f"Bearer {self.settings.key}"} if self.settings.key else None
        try:
            async with connect(
                self.url,
                additional_headers=headers,
                user_agent_header=f"gatewaytui-worker/{__version__}",
                open_timeout=self.settings.open_timeout_s,
                max_size=self.settings.max_frame_bytes,
                logger=_wire_log,
                compression="deflate" if self.settings.compression else None,
            ) as ws:
                self._ws = ws
                try:
                    if self._stopping:  # stop() or drain() raced with the handshake
                        await ws.close(1000, "worker stopping")
                    registered = await self._register(ws)
                    registered_at = loop.time()
                    await self._serve(ws, registered)
                except ConnectionClosed:
                    pass
                finally:
                    self._ws = None
                    self.connected.clear()
                    await self._cancel_jobs(list(self._jobs.values()))
            duration = loop.time() - (registered_at if registered_at is not None else started)
            return SessionEnd(
                registered=registered_at is not None,
                duration_s=duration,
                code=ws.close_code,
                reason=ws.close_reason or "",
            )
        except InvalidURI:
            raise
        except InvalidStatus as exc:
            status = exc.response.status_code
            hint = {401: " (bad or missing worker key)", 403: " (forbidden)"}.get(status, "")
            error = f"gateway refused the connection: HTTP {status}{hint}"
        except WorkerProtocolError as exc:
            error = f"protocol error: {exc}"
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        duration = loop.time() - (registered_at if registered_at is not None else started)
        return SessionEnd(registered=registered_at is not None, duration_s=duration, error=error)

    async def _register(self, ws: ClientConnection) -> RegisteredFrame:
        frame = self._register_template.model_copy(update={"models": self.backend.models})
        await ws.send(frame.model_dump_json())
        try:
            async with asyncio.timeout(self.settings.register_timeout_s):
                raw = await ws.recv()
        except TimeoutError:
            await ws.close(1002, "no registered frame")
            raise WorkerProtocolError("the gateway did not answer register in time") from None
        try:
            answer = GATEWAY_FRAME_ADAPTER.validate_json(raw)
        except ValidationError as exc:
            await ws.close(1002, "expected a registered frame")
            raise WorkerProtocolError(f"bad answer to register: {_short(raw)}") from exc
        if not isinstance(answer, RegisteredFrame):
            await ws.close(1002, "expected a registered frame")
            raise WorkerProtocolError(f"expected registered, got {answer.type}")
        self.registered = answer
        log.info(
            "worker %s: registered with %s (heartbeat %.1fs%s)",
            self.id,
            self._safe_url,
            answer.heartbeat_interval_s,
            ", gateway has this worker drained" if answer.draining else "",
        )
        return answer

    async def _serve(self, ws: ClientConnection, registered: RegisteredFrame) -> None:
        self._status_dirty.clear()
        await ws.send(self._status_frame().model_dump_json())
        self.connected.set()
        ticker = asyncio.create_task(self._ticker(ws, registered), name=f"ticker:{self.id}")
        try:
            async for raw in ws:
                await self._dispatch(ws, raw, registered)
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await ticker

    async def _ticker(self, ws: ClientConnection, registered: RegisteredFrame) -> None:
        """Heartbeats on a timer, and a status frame whenever the backend changes."""
        loop = asyncio.get_running_loop()
        interval = registered.heartbeat_interval_s
        if interval <= 0:
            interval = _DEFAULT_HEARTBEAT_S
        interval = max(interval, _MIN_HEARTBEAT_S)
        # A random first beat spreads a fleet that connected at once over the interval.
        next_beat = loop.time() + self._rng.uniform(0, interval)
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, next_beat - loop.time())):
                        await self._status_dirty.wait()
                if self._status_dirty.is_set():
                    self._status_dirty.clear()
                    await ws.send(self._status_frame().model_dump_json())
                now = loop.time()
                if now >= next_beat:
                    cpu, mem = LOAD_SAMPLER.sample()
                    beat = HeartbeatFrame(cpu_percent=cpu, mem_percent=mem)
                    await ws.send(beat.model_dump_json())
                    next_beat = max(next_beat + interval, now + interval / 2)
        except (asyncio.CancelledError, ConnectionClosed):
            raise
        except Exception:
            # Without heartbeats the gateway would evict us anyway; reconnect cleanly instead.
            log.exception("worker %s: heartbeat loop failed; reconnecting", self.id)
            await ws.close(1011, "worker heartbeat loop failed")

    def _status_frame(self) -> StatusFrame:
        if self._draining:
            ready, reason = False, DRAINING_REASON
        else:
            ready, reason = self.backend.ready, self.backend.reason
        return StatusFrame(
            ready=ready,
            reason=reason[:MAX_REASON_CHARS] if reason else reason,
            draining=self._draining,
            models=self.backend.models,
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
                "worker %s: ignoring a frame that does not parse (%d error(s)): %s",
                self.id,
                exc.error_count(),
                _short(raw),
            )
            return
        if isinstance(frame, JobFrame):
            await self._accept_job(ws, frame, registered)
        elif isinstance(frame, CancelFrame):
            task = self._jobs.get(frame.job_id)
            if task is not None:
                log.info("worker %s: job %s cancelled by the gateway", self.id, frame.job_id)
                task.cancel()
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
        if job.job_id in self._jobs:
            log.warning("worker %s: ignoring duplicate job id %s", self.id, job.job_id)
            return
        if self._draining:
            refusal = JobError(503, "worker is draining", "draining")
        elif self.backend.models and job.model not in self.backend.models:
            refusal = JobError(404, f"model {job.model!r} is not served here", "model_not_found")
        elif not self.backend.ready:
            refusal = JobError(503, f"worker not ready: {self.backend.reason}", "not_ready")
        elif self.inflight >= self.settings.concurrency:
            refusal = JobError(
                503, f"worker at capacity ({self.settings.concurrency} jobs)", "over_capacity"
            )
        if refusal is not None:
            log.info("worker %s: refusing job %s: %s", self.id, job.job_id, refusal.message)
            self.jobs_refused += 1
            await self._send(ws, _error_frame(job.job_id, refusal))
            return
        task = asyncio.create_task(self._run_job(ws, job, registered), name=f"job:{job.job_id}")
        self._jobs[job.job_id] = task
        self.idle.clear()
        task.add_done_callback(lambda _t, job_id=job.job_id: self._job_done(job_id))

    def _job_done(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)
        if not self._jobs:
            self.idle.set()

    async def _run_job(
        self, ws: ClientConnection, job: JobFrame, registered: RegisteredFrame
    ) -> None:
        async def emit(data: dict[str, Any], tokens: int) -> None:
            await ws.send(ChunkFrame(job_id=job.job_id, data=data, tokens=tokens).model_dump_json())

        try:
            try:
                if job.kind == "embeddings":
                    data, usage = await self.backend.embeddings(job)
                elif job.stream:
                    data, usage = None, await self.backend.chat_stream(job, emit)
                else:
                    data, usage = await self.backend.chat(job)
                result = _result_payload(job.job_id, data, usage, registered.max_frame_bytes)
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

    async def _cancel_jobs(self, tasks: Iterable[asyncio.Task[None]]) -> None:
        running = [t for t in tasks if not t.done()]
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)

    async def _send(self, ws: ClientConnection, frame: BaseModel) -> bool:
        try:
            await ws.send(frame.model_dump_json())
        except ConnectionClosed:
            return False
        return True


def _error_frame(job_id: str, error: JobError) -> ErrorFrame:
    return ErrorFrame(
        job_id=job_id, message=error.message[:4096], status=error.status, code=error.code
    )


def _result_payload(
    job_id: str, data: dict[str, Any] | None, usage: Usage | None, max_frame_bytes: int
) -> str:
    """The result frame as JSON, or a job error when it would exceed the gateway's limit."""
    payload = ResultFrame(job_id=job_id, data=data, usage=usage).model_dump_json()
    size = len(payload.encode("utf-8"))
    if max_frame_bytes > 0 and size > max_frame_bytes:
        raise JobError(
            502,
            f"result of {size} bytes exceeds the gateway's max frame size ({max_frame_bytes})",
            "frame_too_large",
        )
    return payload


def _short(raw: str | bytes, limit: int = 200) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return text if len(text) <= limit else f"{text[:limit]}…"
