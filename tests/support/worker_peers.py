"""Real peers for the worker tests: a gateway-side WebSocket server and an OpenAI upstream.

`FakeGateway` is a real `websockets` server on 127.0.0.1 that speaks the worker protocol;
`Upstream` is a real uvicorn server running a small OpenAI-compatible Starlette app.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response as WsResponse

from gatewaytui.schema.protocol import (
    WORKER_FRAME_ADAPTER,
    ChunkFrame,
    ErrorFrame,
    HeartbeatFrame,
    JobFrame,
    RegisteredFrame,
    RegisterFrame,
    ResultFrame,
    StatusFrame,
    Usage,
    WorkerFrame,
)
from gatewaytui.workers import (
    BackoffSettings,
    ChunkSink,
    JobHandler,
    SimulatedHandler,
    SimulateSettings,
    WorkerClient,
    WorkerSettings,
)
from support.backend_upstream import sse_chunk
from support.ports import reserve_port
from support.waiting import WAIT_S, uvicorn_started


async def within(awaitable: Any, timeout: float = WAIT_S) -> Any:
    """Await with a timeout so a broken test fails instead of hanging."""
    async with asyncio.timeout(timeout):
        return await awaitable


# ---- the gateway side -------------------------------------------------------------------


@dataclass
class GatewayConn:
    """One worker connection as the fake gateway sees it."""

    ws: ServerConnection
    register: RegisterFrame
    headers: dict[str, str]
    frames: asyncio.Queue[WorkerFrame] = field(default_factory=asyncio.Queue)
    heartbeats: list[HeartbeatFrame] = field(default_factory=list)
    heartbeat_seen: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    close_code: int | None = None
    close_reason: str = ""

    async def send(self, frame: Any) -> None:
        text = frame if isinstance(frame, str) else frame.model_dump_json()
        await self.ws.send(text)

    async def next(self, timeout: float = WAIT_S) -> WorkerFrame:
        """The next frame other than a heartbeat."""
        return await within(self.frames.get(), timeout)

    async def status(self) -> StatusFrame:
        frame = await self.next()
        assert isinstance(frame, StatusFrame), frame
        return frame

    async def job(
        self,
        job_id: str,
        body: dict[str, Any],
        *,
        kind: str = "chat",
        model: str = "sim-chat",
        stream: bool = False,
    ) -> None:
        await self.send(JobFrame(job_id=job_id, kind=kind, model=model, stream=stream, body=body))

    async def outcome(self, job_id: str) -> tuple[list[ChunkFrame], ResultFrame | ErrorFrame]:
        """Chunks then the result or error of `job_id`; frames of other jobs are an error."""
        chunks: list[ChunkFrame] = []
        while True:
            frame = await self.next()
            assert getattr(frame, "job_id", None) == job_id, frame
            if isinstance(frame, ChunkFrame):
                chunks.append(frame)
            else:
                assert isinstance(frame, ResultFrame | ErrorFrame), frame
                return chunks, frame

    async def wait_closed(self) -> tuple[int | None, str]:
        await within(self.closed.wait())
        return self.close_code, self.close_reason


class FakeGateway:
    """Accepts workers like the real gateway would, and hands each connection to the test.

    `on_register` may return a (code, reason) to close the connection instead of answering
    `registered` (to play a duplicate id); `key` makes the handshake demand a Bearer token.
    """

    def __init__(
        self,
        *,
        heartbeat_interval_s: float = 30.0,
        max_frame_bytes: int = 4 * 1024 * 1024,
        key: str | None = None,
        on_register: Callable[[RegisterFrame, int], tuple[int, str] | None] | None = None,
    ) -> None:
        self.heartbeat_interval_s = heartbeat_interval_s
        self.max_frame_bytes = max_frame_bytes
        self.key = key
        self.on_register = on_register
        self.conns: asyncio.Queue[GatewayConn] = asyncio.Queue()
        self.attempts = 0
        self.rejected_handshakes = 0
        self._server: Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    async def __aenter__(self) -> FakeGateway:
        self._server = await serve(
            self._handler, "127.0.0.1", 0, process_request=self._check_key, max_size=None
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def accept(self) -> GatewayConn:
        """The next worker that registered, after its first status frame."""
        return await within(self.conns.get())

    def _check_key(self, connection: ServerConnection, request: WsRequest) -> WsResponse | None:
        if request.path != "/api/workers/connect":
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        if self.key is not None and request.headers.get("Authorization") != f"Bearer {self.key}":
            self.rejected_handshakes += 1
            return connection.respond(HTTPStatus.UNAUTHORIZED, "bad worker key\n")
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        self.attempts += 1
        register = WORKER_FRAME_ADAPTER.validate_json(await ws.recv())
        assert isinstance(register, RegisterFrame), register
        if self.on_register is not None:
            refusal = self.on_register(register, self.attempts)
            if refusal is not None:
                await ws.close(*refusal)
                return
        assert ws.request is not None
        conn = GatewayConn(ws=ws, register=register, headers=dict(ws.request.headers))
        await ws.send(
            RegisteredFrame(
                worker_id=register.id,
                heartbeat_interval_s=self.heartbeat_interval_s,
                heartbeat_expiry_s=self.heartbeat_interval_s * 3,
                max_frame_bytes=self.max_frame_bytes,
            ).model_dump_json()
        )
        self.conns.put_nowait(conn)
        try:
            async for raw in ws:
                frame = WORKER_FRAME_ADAPTER.validate_json(raw)
                if isinstance(frame, HeartbeatFrame):
                    conn.heartbeats.append(frame)
                    conn.heartbeat_seen.set()
                else:
                    conn.frames.put_nowait(frame)
        except Exception:  # the test reads close_code; a dropped socket is expected in some
            pass
        finally:
            conn.close_code = ws.close_code
            conn.close_reason = ws.close_reason or ""
            conn.closed.set()


# ---- an OpenAI-compatible upstream ------------------------------------------------------


class UpstreamState:
    """What the fake upstream serves, and what it saw."""

    def __init__(self) -> None:
        self.models = ["up-chat", "up-embed"]
        self.fail_status: int | None = None
        self.auth_headers: list[str | None] = []
        self.bodies: list[dict[str, Any]] = []
        self.stream_chunks = [
            {"role": "assistant", "content": ""},
            {"content": "Hello"},
            {"content": " there"},
        ]
        self.hold: asyncio.Event | None = None  # chat answers only once this is set
        self.cut_stream = False  # the stream breaks off (no chunked-encoding end) mid-way


_USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


async def _chat_events(
    state: UpstreamState, base: dict[str, Any], body: dict[str, Any]
) -> AsyncIterator[str]:
    """The upstream's SSE answer: `state.stream_chunks`, broken off after the first when
    `state.cut_stream`, then the finish chunk, usage if asked for, and [DONE]."""
    for delta in state.stream_chunks:
        yield sse_chunk(base, delta)
        if state.cut_stream:
            raise ConnectionAbortedError("the upstream broke off the stream")
    yield sse_chunk(base, {}, finish="stop")
    if (body.get("stream_options") or {}).get("include_usage"):
        yield f"data: {json.dumps(base | {'choices': [], 'usage': _USAGE})}\n\n"
    yield ": keep-alive comment\n\ndata: [DONE]\n\n"


def upstream_app(state: UpstreamState) -> Starlette:
    """`/v1/models`, `/v1/chat/completions` (JSON and SSE) and `/v1/embeddings`."""

    def seen(request: Request) -> None:
        state.auth_headers.append(request.headers.get("authorization"))

    def failure() -> Response | None:
        if state.fail_status is None:
            return None
        body = {"error": {"message": "upstream exploded", "type": "server_error"}}
        return JSONResponse(body, status_code=state.fail_status)

    async def models(request: Request) -> Response:
        seen(request)
        data = [{"id": m, "object": "model", "owned_by": "test"} for m in state.models]
        return JSONResponse({"object": "list", "data": data})

    async def chat(request: Request) -> Response:
        seen(request)
        body = await request.json()
        state.bodies.append(body)
        if (fail := failure()) is not None:
            return fail
        if state.hold is not None:
            await state.hold.wait()
        base = {"id": "chatcmpl-up", "created": 1, "model": body["model"]}
        if body.get("stream"):
            return StreamingResponse(
                _chat_events(state, base, body), media_type="text/event-stream"
            )
        message = {"role": "assistant", "content": "Hello there"}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return JSONResponse(
            base | {"object": "chat.completion", "choices": [choice], "usage": _USAGE}
        )

    async def embeddings(request: Request) -> Response:
        seen(request)
        body = await request.json()
        state.bodies.append(body)
        if (fail := failure()) is not None:
            return fail
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(text)), 1.0]}
            for i, text in enumerate(body["input"])
        ]
        usage = {"prompt_tokens": len(data), "total_tokens": len(data)}
        return JSONResponse(
            {"object": "list", "data": data, "model": body["model"], "usage": usage}
        )

    return Starlette(
        routes=[
            Route("/v1/models", models),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
        ]
    )


@contextlib.asynccontextmanager
async def run_upstream(
    state: UpstreamState, sock: socket.socket | None = None
) -> AsyncIterator[str]:
    """Serve `upstream_app(state)` with uvicorn on `sock` (or a fresh port); yields its URL."""
    sock = sock or reserve_port()
    port = sock.getsockname()[1]
    config = uvicorn.Config(upstream_app(state), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await uvicorn_started(server, task)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await within(task)


# ---- worker-side helpers ----------------------------------------------------------------


def worker_settings(gateway_url: str, **overrides: Any) -> WorkerSettings:
    """Fast settings for tests: no simulated latency, tiny backoff."""
    values: dict[str, Any] = {
        "gateway_url": gateway_url,
        "id": "w1",
        "simulate": SimulateSettings(latency_s=0, tokens_per_second=0),
        "backoff": BackoffSettings(base_s=0.01, cap_s=0.02, stable_after_s=60),
        "open_timeout_s": 2,
        "register_timeout_s": 2,
    }
    values.update(overrides)
    return WorkerSettings(**values)


@contextlib.asynccontextmanager
async def running_worker(
    settings: WorkerSettings, handler: JobHandler | None = None
) -> AsyncIterator[WorkerClient]:
    """A started WorkerClient (and its handler), stopped on exit."""
    handler = handler or SimulatedHandler(settings.simulate)
    async with handler:
        client = WorkerClient(settings, handler)
        await client.start()
        try:
            yield client
        finally:
            await within(client.stop())


class GateHandler(JobHandler):
    """Jobs block until the test opens the gate; records starts and cancellations."""

    def __init__(self) -> None:
        super().__init__(["gate"])
        self.gate = asyncio.Event()
        self.started: asyncio.Queue[str] = asyncio.Queue()
        self.cancelled: asyncio.Queue[str] = asyncio.Queue()

    async def _hold(self, job: JobFrame) -> None:
        self.started.put_nowait(job.job_id)
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled.put_nowait(job.job_id)
            raise

    async def chat(self, job: JobFrame) -> tuple[dict[str, Any], Usage]:
        await self._hold(job)
        return {"id": job.job_id, "object": "chat.completion", "choices": []}, Usage()

    async def chat_stream(self, job: JobFrame, emit: ChunkSink) -> Usage:
        await self._hold(job)
        return Usage()

    async def embeddings(self, job: JobFrame) -> tuple[dict[str, Any], Usage]:
        await self._hold(job)
        return {"object": "list", "data": []}, Usage()
