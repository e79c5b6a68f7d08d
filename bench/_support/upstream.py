"""A tiny OpenAI-compatible upstream for bench/overhead.py (run in its own process).

`GET /v1/models`, `POST /v1/chat/completions` (non-stream: a fixed small completion after a
service time spent in asyncio.sleep; `"stream": true`: `max_tokens` chunks of one word each,
written back to back as a fast server would, then the usage chunk when
`stream_options.include_usage` asks for it, then `[DONE]`), `POST /v1/embeddings` (one
vector of `dimensions` floats, default 256, per input), and `PUT /_bench/service_ms?ms=N` to
change the service time between phases without restarting anything.

    python bench/_support/upstream.py --port 9001 --service-ms 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

MODEL = "bench-model"
_state = {"service_s": 0.02}

_COMPLETION = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": int(time.time()),
    "model": MODEL,
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello from the bench upstream."},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11},
}
_COMPLETION_BYTES = json.dumps(_COMPLETION, separators=(",", ":")).encode()
_MODELS_BYTES = json.dumps(
    {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "bench"}]}
).encode()


async def models(_: Request) -> Response:
    return Response(_MODELS_BYTES, media_type="application/json")


_SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


def _chunk(n: int, created: int) -> bytes:
    data = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": created,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "delta": {"content": f"w{n} "} if n else {"role": "assistant", "content": ""},
                "finish_reason": None,
            }
        ],
    }
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def stream_bytes(count: int, usage: bool) -> list[bytes]:
    """The SSE events of one stream of `count` chunks (each chunk its own event)."""
    created = _COMPLETION["created"]
    events = [_chunk(n, created) for n in range(count)]
    last = json.loads(events[-1][6:])
    last["choices"][0]["finish_reason"] = "stop"
    events[-1] = b"data: " + json.dumps(last, separators=(",", ":")).encode() + b"\n\n"
    if usage:
        tail = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": created,
            "model": MODEL,
            "choices": [],
            "usage": {"prompt_tokens": 5, "completion_tokens": count, "total_tokens": 5 + count},
        }
        events.append(b"data: " + json.dumps(tail, separators=(",", ":")).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


async def chat(request: Request) -> Response:
    raw = await request.body()  # read it like a real server would
    delay = _state["service_s"]
    if delay > 0:
        await asyncio.sleep(delay)
    if b'"stream":true' not in raw.replace(b" ", b""):
        return Response(_COMPLETION_BYTES, media_type="application/json")
    body = json.loads(raw)
    count = max(1, int(body.get("max_tokens") or 16))
    usage = bool((body.get("stream_options") or {}).get("include_usage"))
    # Encoded per request, as a real server makes each chunk (precomputed bytes made the
    # upstream several times cheaper than any real one, and direct a poor reference).
    return _Stream(stream_bytes(count, usage))


class _Stream(Response):
    """Each event its own ASGI body message (one write each), back to back."""

    def __init__(self, events: list[bytes]) -> None:
        self.events = events
        self.background = None

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        for event in self.events:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


_VECTORS: dict[int, list[float]] = {}


async def embeddings(request: Request) -> Response:
    body = json.loads(await request.body())
    inputs = body.get("input")
    inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
    dim = int(body.get("dimensions") or 256)
    vector = _VECTORS.get(dim)
    if vector is None:
        vector = _VECTORS[dim] = [round((i % 97) / 97 - 0.5, 6) for i in range(dim)]
    answer = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": vector} for i in range(len(inputs))
        ],
        "model": body.get("model", MODEL),
        "usage": {"prompt_tokens": 4 * len(inputs), "total_tokens": 4 * len(inputs)},
    }
    return Response(json.dumps(answer, separators=(",", ":")), media_type="application/json")


async def service_ms(request: Request) -> JSONResponse:
    if request.method == "PUT":
        _state["service_s"] = float(request.query_params.get("ms", "0")) / 1000
    return JSONResponse({"service_ms": _state["service_s"] * 1000})


app = Starlette(
    routes=[
        Route("/v1/models", models),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/_bench/service_ms", service_ms, methods=["GET", "PUT"]),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--service-ms", type=float, default=20.0)
    args = parser.parse_args()
    _state["service_s"] = args.service_ms / 1000
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        server_header=False,
        date_header=False,
        backlog=2048,
    )


if __name__ == "__main__":
    main()
