"""Asking a connected worker for its own log lines, over its existing connection.

Nothing flows unless an operator asks: `GET /api/workers/{id}/logs` sends one `logs_request`
and returns the snapshot; `?follow=true` keeps the request open and streams new lines (SSE)
until the client leaves, when a `logs_stop` ends it on the worker. A worker that does not
list the `logs` feature at register (an older worker) is reported as not supporting logs at
once; one that lists it but stays silent is reported after `answer_timeout_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from gatewaytui.gateway.jobs import GatewayError
from gatewaytui.gateway.registry import WorkerRecord
from gatewaytui.schema.protocol import (
    FEATURE_LOGS,
    LogsFrame,
    LogsRequestFrame,
    LogsStopFrame,
)

log = logging.getLogger("gatewaytui.gateway.worker_logs")

DEFAULT_TAIL = 200
MAX_TAIL = 10_000
ANSWER_TIMEOUT_S = 2.0  # a worker answers a logs_request at once (the ring is in memory)
QUEUE_FRAMES = 256  # frames buffered per follower before lines are counted as dropped
MAX_OPEN_PER_WORKER = 8  # matches the worker's own limit of followers


class LogsUnsupportedError(GatewayError):
    status, type, code = 501, "server_error", "logs_unsupported"


class LogsUnavailableError(GatewayError):
    status, type, code = 409, "invalid_request_error", "worker_not_connected"


class LogsTimeoutError(GatewayError):
    status, type, code = 504, "server_error", "logs_timeout"


@dataclass(eq=False)
class _Request:
    id: str
    worker_id: str
    queue: asyncio.Queue[LogsFrame | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=QUEUE_FRAMES)
    )
    dropped: int = 0

    def put(self, frame: LogsFrame | None) -> None:
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            if frame is None:  # the end must get through: make room for it
                with contextlib.suppress(asyncio.QueueEmpty):
                    lost = self.queue.get_nowait()
                    self.dropped += len(lost.lines) if lost is not None else 0
                self.queue.put_nowait(None)
            else:
                self.dropped += len(frame.lines) + frame.dropped

    async def next(self, timeout: float) -> LogsFrame | None:
        async with asyncio.timeout(timeout):
            return await self.queue.get()


class WorkerLogBroker:
    """Routes `logs` frames from workers to the HTTP requests that asked for them."""

    def __init__(self, answer_timeout_s: float = ANSWER_TIMEOUT_S) -> None:
        self.answer_timeout_s = answer_timeout_s
        self._open: dict[str, _Request] = {}
        self._ids = itertools.count(1)

    @property
    def open_requests(self) -> int:
        return len(self._open)

    # ---- from the worker connection ---------------------------------------------------------

    def on_frame(self, worker: WorkerRecord, frame: LogsFrame) -> None:
        request = self._open.get(frame.request_id)
        if request is None or request.worker_id != worker.id:
            return  # a late answer to a request that has ended, or not ours: ignore
        request.put(frame)

    def worker_gone(self, worker_id: str) -> None:
        for request in list(self._open.values()):
            if request.worker_id == worker_id:
                request.put(None)

    # ---- for the routes -----------------------------------------------------------------------

    async def snapshot(self, worker: WorkerRecord, tail: int = DEFAULT_TAIL) -> dict[str, Any]:
        """The worker's last `tail` log lines: {"worker_id", "lines", "dropped"}."""
        async with self._opened(worker, tail, follow=False) as request:
            lines: list[dict[str, Any]] = []
            frame = await self._first(worker, request)
            while True:
                if frame is None:
                    raise LogsUnavailableError(f"worker {worker.id} disconnected")
                lines.extend(line.model_dump() for line in frame.lines)
                if frame.error:
                    raise GatewayError(f"worker {worker.id}: {frame.error}", status=503)
                if frame.snapshot_done or frame.ended:
                    break
                frame = await self._later(worker, request)
            return {"worker_id": worker.id, "lines": lines, "dropped": request.dropped}

    async def follow(
        self, worker: WorkerRecord, tail: int = DEFAULT_TAIL
    ) -> AsyncIterator[dict[str, Any]]:
        """Open a followed request; its first answer arrives before this returns (so an
        unsupported or silent worker is an HTTP error, not an empty stream). The iterator
        yields {"lines", "dropped"} batches, then {"ended": reason} once."""
        opened = self._opened(worker, tail, follow=True)
        request = await opened.__aenter__()
        try:
            first = await self._first(worker, request)
        except BaseException:
            await opened.__aexit__(None, None, None)
            raise
        return self._stream(worker, request, first, opened)

    async def _stream(
        self,
        worker: WorkerRecord,
        request: _Request,
        frame: LogsFrame | None,
        opened: contextlib.AbstractAsyncContextManager[_Request],
    ) -> AsyncIterator[dict[str, Any]]:
        first = True  # the (maybe empty) snapshot always goes out: the stream is live
        try:
            while True:
                if frame is None:
                    yield {"ended": f"worker {worker.id} disconnected"}
                    return
                lost, request.dropped = request.dropped, 0
                if first or frame.lines or frame.dropped or lost:
                    first = False
                    yield {
                        "lines": [line.model_dump() for line in frame.lines],
                        "dropped": frame.dropped + lost,
                    }
                if frame.ended:
                    yield {"ended": frame.error or "the worker ended the stream"}
                    return
                frame = await request.queue.get()
        finally:
            await opened.__aexit__(None, None, None)

    # ---- internals --------------------------------------------------------------------------

    def _check(self, worker: WorkerRecord) -> None:
        if worker.gone_at is not None or worker.conn is None:
            raise LogsUnavailableError(
                f"worker {worker.id} is not connected: there is no process to ask for logs"
            )
        if FEATURE_LOGS not in worker.features:
            version = f" (version {worker.version})" if worker.version else ""
            raise LogsUnsupportedError(f"worker {worker.id} does not support logs{version}")
        if sum(1 for r in self._open.values() if r.worker_id == worker.id) >= MAX_OPEN_PER_WORKER:
            raise GatewayError(
                f"worker {worker.id} already has {MAX_OPEN_PER_WORKER} log viewers", status=429
            )

    @contextlib.asynccontextmanager
    async def _opened(
        self, worker: WorkerRecord, tail: int, *, follow: bool
    ) -> AsyncIterator[_Request]:
        self._check(worker)
        conn = worker.conn
        assert conn is not None
        request = _Request(f"l{next(self._ids)}", worker.id)
        self._open[request.id] = request
        try:
            frame = LogsRequestFrame(
                request_id=request.id, tail=max(0, min(tail, MAX_TAIL)), follow=follow
            )
            try:
                await conn.send(frame.model_dump())
            except Exception as exc:
                raise LogsUnavailableError(f"worker {worker.id}: cannot send: {exc}") from None
            yield request
        finally:
            self._open.pop(request.id, None)
            if follow and worker.conn is conn and worker.gone_at is None:
                with contextlib.suppress(Exception):
                    await conn.send(LogsStopFrame(request_id=request.id).model_dump())

    async def _first(self, worker: WorkerRecord, request: _Request) -> LogsFrame | None:
        try:
            return await request.next(self.answer_timeout_s)
        except TimeoutError:
            raise LogsTimeoutError(
                f"worker {worker.id} did not answer the logs request within "
                f"{self.answer_timeout_s:g}s"
            ) from None

    async def _later(self, worker: WorkerRecord, request: _Request) -> LogsFrame | None:
        try:
            return await request.next(max(self.answer_timeout_s, 5.0))
        except TimeoutError:
            raise LogsTimeoutError(f"worker {worker.id} stopped sending its logs") from None
