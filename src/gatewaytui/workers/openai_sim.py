"""The simulated inference server with an OpenAI HTTP face, as a vLLM or llama-server looks
from outside: `/v1/models`, `/v1/chat/completions` (JSON and SSE) and `/v1/embeddings`, answered
by a `SimulatedHandler` (its latency, pace, failures and deterministic output).

The demo registers one as a gateway backend; it also stands in for an upstream when trying
`gatewaytui worker --upstream` with no GPU at hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gatewaytui.schema.protocol import JobFrame
from gatewaytui.workers.job_handler import JobError
from gatewaytui.workers.simulated import SimulatedHandler

_DONE = object()


def _error(status: int, message: str, code: str | None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "code": code}}, status)


def openai_app(handler: SimulatedHandler) -> Starlette:
    """An ASGI app that serves `handler`'s models over the OpenAI API."""

    async def models(_: Request) -> Response:
        created = int(time.time())
        data = [
            {"id": name, "object": "model", "created": created, "owned_by": "simulated"}
            for name in handler.models
        ]
        return JSONResponse({"object": "list", "data": data})

    async def job_from(request: Request, kind: Literal["chat", "embeddings"]) -> JobFrame:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise JobError(400, "the body is not JSON", "invalid_json") from None
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            raise JobError(400, "the body needs a model", "invalid_request")
        if body["model"] not in handler.models:
            raise JobError(404, f"model {body['model']!r} is not served here", "model_not_found")
        if not handler.ready:
            raise JobError(503, f"not ready: {handler.reason}", "not_ready")
        stream = kind == "chat" and body.get("stream") is True
        return JobFrame(
            job_id=uuid.uuid4().hex[:12], kind=kind, model=body["model"], stream=stream, body=body
        )

    async def chat(request: Request) -> Response:
        try:
            job = await job_from(request, "chat")
            if not job.stream:
                data, _ = await handler.chat(job)
                return JSONResponse(data)
        except JobError as exc:
            return _error(exc.status, exc.message, exc.code)
        include_usage = bool((job.body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            _stream(handler, job, include_usage), media_type="text/event-stream"
        )

    async def embeddings(request: Request) -> Response:
        try:
            data, _ = await handler.embeddings(await job_from(request, "embeddings"))
        except JobError as exc:
            return _error(exc.status, exc.message, exc.code)
        return JSONResponse(data)

    return Starlette(
        routes=[
            Route("/v1/models", models),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
        ]
    )


async def _stream(
    handler: SimulatedHandler, job: JobFrame, include_usage: bool
) -> AsyncIterator[str]:
    """The handler's chunks as Server-Sent Events; a client that leaves cancels the job."""
    chunks: asyncio.Queue[Any] = asyncio.Queue()

    async def emit(data: dict[str, Any], _tokens: int) -> None:
        await chunks.put(data)

    async def produce() -> None:
        try:
            usage = await handler.chat_stream(job, emit)
            if include_usage:
                await chunks.put(
                    {
                        "id": f"chatcmpl-{job.job_id}",
                        "object": "chat.completion.chunk",
                        "model": job.model,
                        "choices": [],
                        "usage": usage.model_dump(),
                    }
                )
        except JobError as exc:
            await chunks.put({"error": {"message": exc.message, "code": exc.code}})
        finally:
            await chunks.put(_DONE)

    producer = asyncio.create_task(produce())
    try:
        while (item := await chunks.get()) is not _DONE:
            yield f"data: {json.dumps(item)}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producer
