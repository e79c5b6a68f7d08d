"""`GET /api/workers/{id}/logs`: a worker's own recent log lines, once or followed (SSE).

A viewer token is enough, as for every other read. `tail` (default 200, at most 10,000)
says how many past lines; `follow=true` answers `text/event-stream`: one `logs` event per
batch of lines (`{"lines": [...], "dropped": n}`), then one `end` event (`{"reason": ...}`)
when the worker disconnects or ends the stream; comment lines keep idle streams alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request

from gatewaytui.gateway.core import Gateway
from gatewaytui.gateway.jobs import GatewayError, UnknownTargetError
from gatewaytui.gateway.routes.common import EventStreamResponse, Guard
from gatewaytui.gateway.worker_logs import DEFAULT_TAIL, MAX_TAIL

KEEPALIVE_S = 15.0


def _tail(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_TAIL
    try:
        value = int(raw)
    except ValueError:
        raise GatewayError(f"tail must be a whole number, got {raw[:40]!r}", status=422) from None
    if not 0 <= value <= MAX_TAIL:
        raise GatewayError(f"tail must be between 0 and {MAX_TAIL}", status=422)
    return value


def _flag(raw: str | None) -> bool:
    return (raw or "").lower() in ("1", "true", "yes", "on")


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def _with_keepalive(
    source: AsyncIterator[dict[str, Any]], every: float
) -> AsyncIterator[bytes]:
    """The batches as SSE events, with a comment line whenever nothing came for `every` s."""
    iterator = aiter(source)
    pending: asyncio.Task[dict[str, Any]] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(iterator))
            done, _ = await asyncio.wait({pending}, timeout=every)
            if not done:
                yield b": keepalive\n\n"
                continue
            try:
                item = pending.result()
            except StopAsyncIteration:
                return
            finally:
                pending = None
            if "ended" in item:
                yield _sse("end", {"reason": item["ended"]})
                return
            yield _sse("logs", item)
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        closer = getattr(iterator, "aclose", None)
        if closer is not None:
            await closer()


def _owner_failed(message: str) -> bytes:
    return _sse("end", {"reason": message})


def add_worker_log_routes(app: FastAPI, gateway: Gateway, guard: Guard) -> None:
    """Install the worker-logs route (a viewer token reads it)."""
    broker = gateway.worker_logs

    @app.get("/api/workers/{worker_id:path}/logs", response_model=None)
    async def worker_logs(worker_id: str, request: Request) -> Any:
        guard.require_role(request.headers, "viewer")
        worker = gateway.registry.get(worker_id)
        tail = _tail(request.query_params.get("tail"))
        cluster = gateway.cluster
        if cluster is not None and (worker is None or worker.gone_at is not None):
            replica = cluster.proxy.owner(request, "workers", worker_id)
            if replica is not None:  # its connection is on another replica: ask that one
                wait = gateway.config.cluster_command_timeout
                return await cluster.proxy.send(
                    request, replica, wait=wait, on_stream_error=_owner_failed
                )
        if worker is None:
            raise UnknownTargetError(f"no worker with id {worker_id!r}")
        if not _flag(request.query_params.get("follow")):
            return await broker.snapshot(worker, tail)
        batches = await broker.follow(worker, tail)
        return EventStreamResponse(
            _with_keepalive(batches, KEEPALIVE_S),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
