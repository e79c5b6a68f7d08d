"""A real OpenAI-compatible upstream for the backend tests: a small Starlette app served by
uvicorn on a real loopback port, in its own thread (tests drive it with blocking calls).

It serves `/v1/models` (or Ollama's `/api/tags`), `/v1/chat/completions` (JSON and SSE) and
`/v1/embeddings`; checks a Bearer key if given (and, like a careless server, echoes the key it
got in its 401); records what it received; can hold requests at a gate, fail on demand and
tell when a client went away mid-stream, or send a stream line of any length.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from support.loop_thread import run_loop
from support.ports import reserve_port
from support.waiting import WAIT_S, uvicorn_started


class Upstream:
    """Start with `Upstream(...)`, stop with `stop()`; `url` is the OpenAI base (`…/v1`)."""

    def __init__(
        self,
        *,
        models: list[str] | None = None,
        key: str | None = None,
        ollama: bool = False,
        sock: socket.socket | None = None,
        dimension: int = 2,
    ) -> None:
        self.models = list(models or ["up-chat", "up-embed"])
        self.key = key
        self.ollama = ollama
        self.dimension = dimension
        self.fail_status: int | None = None
        self.hold = False  # chat requests wait at the gate until release()
        self.pad_stream = 0  # characters added to the stream's third chunk (a long SSE line)
        self.requests: list[dict[str, Any]] = []  # {"path", "auth", "body"}
        self.arrived = threading.Semaphore(0)  # one release per request that reached the gate
        self.disconnected = threading.Event()  # a client left in the middle of a stream
        self.completed = 0
        self._gate: asyncio.Event | None = None
        self.loop = asyncio.new_event_loop()
        self.sock = sock or reserve_port()
        self.port = self.sock.getsockname()[1]
        self.root = f"http://127.0.0.1:{self.port}"
        self.url = self.root + "/v1"
        config = uvicorn.Config(self.app(), log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(self._started(), self.loop)
        started.result(WAIT_S + 1)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._gate = asyncio.Event()
        self._serve = self.loop.create_task(self.server.serve(sockets=[self.sock]))
        run_loop(self.loop)

    async def _started(self) -> None:
        await uvicorn_started(self.server, self._serve, WAIT_S)  # _serve is set on this loop

    def release(self) -> None:
        """Open the gate: held requests go on (and later ones pass)."""
        self.hold = False
        self.loop.call_soon_threadsafe(self._gate.set)  # type: ignore[union-attr]

    def wait_arrived(self, timeout: float = WAIT_S) -> None:
        if not self.arrived.acquire(timeout=timeout):
            raise AssertionError("no request reached the upstream's gate")

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread.is_alive():  # a second stop() finds the loop closed
            self.loop.call_soon_threadsafe(self._gate.set)  # type: ignore[union-attr]
            asyncio.run_coroutine_threadsafe(self._finish(), self.loop).result(WAIT_S)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(WAIT_S)
        self.sock.close()

    async def _finish(self) -> None:
        await asyncio.wait_for(self._serve, WAIT_S)

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests if r["path"] == path]

    # ---- the app ------------------------------------------------------------------------

    def app(self) -> Starlette:
        routes = [
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/v1/embeddings", self._embeddings, methods=["POST"]),
        ]
        listing = (
            Route("/api/tags", self._tags) if self.ollama else Route("/v1/models", self._models)
        )
        return Starlette(routes=[*routes, listing])

    async def _receive(self, request: Request) -> tuple[dict[str, Any], Response | None]:
        """Record the request; its body, and the refusal to send instead (a bad key: 401, a
        failure asked for: `fail_status`), if any."""
        body = await request.json() if request.method == "POST" else {}
        self.requests.append(
            {"path": request.url.path, "auth": request.headers.get("authorization"), "body": body}
        )
        got = request.headers.get("authorization")
        if self.key is not None and got != f"Bearer {self.key}":
            # A careless server: it repeats the credentials it received.
            message = f"invalid api key: {got}"
            return body, JSONResponse({"error": {"message": message}}, status_code=401)
        if self.fail_status is not None:
            error = {"error": {"message": "upstream exploded", "type": "server_error"}}
            return body, JSONResponse(error, status_code=self.fail_status)
        return body, None

    async def _gate_wait(self) -> None:
        if self.hold:
            self.arrived.release()
            await self._gate.wait()  # type: ignore[union-attr]

    async def _models(self, request: Request) -> Response:
        _body, refused = await self._receive(request)
        if refused is not None:
            return refused
        data = [{"id": m, "object": "model", "owned_by": "upstream"} for m in self.models]
        return JSONResponse({"object": "list", "data": data})

    async def _tags(self, request: Request) -> Response:
        _body, refused = await self._receive(request)
        if refused is not None:
            return refused
        entries = [{"name": m, "model": m, "size": 1, "digest": "d"} for m in self.models]
        return JSONResponse({"models": entries})

    async def _chat(self, request: Request) -> Response:
        body, refused = await self._receive(request)
        if refused is not None:
            return refused
        base = {"id": "chatcmpl-up", "created": 1, "model": body["model"]}
        if body.get("stream"):
            return StreamingResponse(self._events(base, body), media_type="text/event-stream")
        await self._gate_wait()
        self.completed += 1
        message = {"role": "assistant", "content": "Hello from upstream"}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return JSONResponse(
            base | {"object": "chat.completion", "choices": [choice], "usage": _USAGE}
        )

    async def _events(self, base: dict[str, Any], body: dict[str, Any]) -> AsyncIterator[str]:
        finished = False
        try:
            for delta in ({"role": "assistant", "content": ""}, {"content": "Hel"}):
                yield sse_chunk(base, delta)
            await self._gate_wait()  # a stream is held after its first bytes
            for delta in ({"content": "lo" + "x" * self.pad_stream}, {"content": "!"}):
                yield sse_chunk(base, delta)
            yield sse_chunk(base, {}, finish="stop")
            if (body.get("stream_options") or {}).get("include_usage"):
                yield f"data: {json.dumps(base | {'choices': [], 'usage': _USAGE})}\n\n"
            yield ": keep-alive\n\ndata: [DONE]\n\n"
            finished = True
            self.completed += 1
        finally:
            if not finished:
                self.disconnected.set()

    async def _embeddings(self, request: Request) -> Response:
        body, refused = await self._receive(request)
        if refused is not None:
            return refused
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": [float(len(text))] + [1.0] * (self.dimension - 1),
            }
            for i, text in enumerate(inputs)
        ]
        self.completed += 1
        usage = {"prompt_tokens": 2 * len(data), "total_tokens": 2 * len(data)}
        return JSONResponse(
            {"object": "list", "data": data, "model": body["model"], "usage": usage}
        )


_USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


def sse_chunk(base: dict[str, Any], delta: dict[str, Any], finish: str | None = None) -> str:
    """One `chat.completion.chunk` as an SSE event (both fake upstreams send these)."""
    chunk = base | {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(chunk)}\n\n"


def upstreams() -> Iterator[Callable[..., Upstream]]:
    """The body of an `upstream` fixture: `upstream(**Upstream kwargs)` starts one; all are
    stopped after the test."""
    started: list[Upstream] = []

    def start(**kwargs: Any) -> Upstream:
        up = Upstream(**kwargs)
        started.append(up)
        return up

    yield start
    for up in started:
        up.stop()
