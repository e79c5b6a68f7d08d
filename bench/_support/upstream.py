"""A tiny OpenAI-compatible upstream for bench/overhead.py (run in its own process).

`GET /v1/models`, `POST /v1/chat/completions` (non-stream: a fixed small completion after a
service time spent in asyncio.sleep), and `PUT /_bench/service_ms?ms=N` to change the service
time between phases without restarting anything.

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


async def chat(request: Request) -> Response:
    await request.body()  # read it like a real server would; the content is not used
    delay = _state["service_s"]
    if delay > 0:
        await asyncio.sleep(delay)
    return Response(_COMPLETION_BYTES, media_type="application/json")


async def service_ms(request: Request) -> JSONResponse:
    if request.method == "PUT":
        _state["service_s"] = float(request.query_params.get("ms", "0")) / 1000
    return JSONResponse({"service_ms": _state["service_s"] * 1000})


app = Starlette(
    routes=[
        Route("/v1/models", models),
        Route("/v1/chat/completions", chat, methods=["POST"]),
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
