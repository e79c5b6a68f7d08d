"""`WS /api/workers/connect`: workers dial in with the worker key, register, then exchange
frames (the protocol in `schema.protocol`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, WebSocket
from pydantic import ValidationError

from gatewaytui.gateway.core import Gateway
from gatewaytui.gateway.jobs import RawChunks, RawResult
from gatewaytui.gateway.registry import DuplicateWorkerError
from gatewaytui.gateway.routes.common import AuthError, Guard, client_addr, deny
from gatewaytui.gateway.routes.dial_in import DialIn, frame_text, parse_frame, serve_dial_in
from gatewaytui.schema.protocol import (
    WORKER_FRAME_ADAPTER,
    ChunksFrame,
    RegisterFrame,
    ResultFrame,
    Usage,
)
from gatewaytui.shared import codec
from gatewaytui.shared.passthrough import embeddings_summary

log = logging.getLogger("gatewaytui.gateway.routes.workers")


def worker_dial_in(gateway: Gateway) -> DialIn:
    """How a worker's connection maps onto the gateway's registry and job path."""
    limit = gateway.config.max_frame_bytes

    def parse(message: Mapping[str, Any]) -> tuple[Any, int]:
        text = frame_text(message, limit, "worker")
        if text.startswith(CHUNKS_PREFIX):  # the stream's hot path: no pydantic per frame
            fast: Any = raw_chunks(text)
            if fast is not None:
                return fast, len(text)
        elif text.startswith(RESULT_PREFIX):  # every job's answer (embeddings: large)
            fast = result_frame(text)
            if fast is not None:
                return fast, len(text)
        frame = parse_frame(WORKER_FRAME_ADAPTER, text)
        if isinstance(frame, ChunksFrame):
            frame = RawChunks(
                frame.job_id, [c.encode() for c in frame.chunks], frame.tokens, frame.usage
            )
        elif isinstance(frame, ResultFrame) and frame.raw is not None:
            frame = raw_result(frame.job_id, frame.raw, frame.usage)
        return frame, len(text)

    return DialIn(
        noun="worker",
        parse=parse,
        register_type=RegisterFrame,
        register=gateway.worker_registered,
        duplicate_error=DuplicateWorkerError,
        on_frame=lambda worker, frame, _size: gateway.worker_frame(worker, frame),
        disconnected=gateway.worker_disconnected,
        events=gateway.events,
        tag_events=True,
        send_limit=limit,
    )


CHUNKS_PREFIX = '{"type":"chunks"'


def raw_chunks(text: str) -> RawChunks | None:
    """A well-formed `chunks` frame read without pydantic (None: let the schema say what is
    wrong with it). The chunks' texts are kept as they are, to be passed on as bytes."""
    try:
        frame = codec.loads(text)
    except ValueError:
        return None
    if not isinstance(frame, dict) or frame.get("type") != "chunks":
        return None
    job_id, chunks = frame.get("job_id"), frame.get("chunks")
    tokens, usage = frame.get("tokens", 0), frame.get("usage", False)
    if (
        type(job_id) is not str
        or type(chunks) is not list
        or not chunks
        or type(tokens) is not int
        or tokens < 0
        or type(usage) is not bool
    ):
        return None
    events: list[bytes] = []
    for chunk in chunks:
        if type(chunk) is not str:
            return None
        events.append(chunk.encode())
    return RawChunks(job_id, events, tokens, usage)


RESULT_PREFIX = '{"type":"result"'


def result_frame(text: str) -> ResultFrame | RawResult | None:
    """A well-formed `result` frame parsed with orjson and built without validating its
    `data` again (a JSON object is all the schema asks of it); None: let the schema judge."""
    try:
        frame = codec.loads(text)
    except ValueError:
        return None
    if not isinstance(frame, dict) or frame.get("type") != "result" or len(frame) > 5:
        return None
    job_id, data, usage = frame.get("job_id"), frame.get("data"), frame.get("usage")
    raw = frame.get("raw")
    if type(job_id) is not str or not (data is None or type(data) is dict):
        return None
    if not (raw is None or type(raw) is str):
        return None
    if usage is not None:
        if type(usage) is not dict:
            return None
        try:
            usage = Usage.model_validate(usage)
        except ValidationError:
            return None
    if raw is not None:
        return raw_result(job_id, raw, usage)
    return ResultFrame.model_construct(type="result", job_id=job_id, data=data, usage=usage)


def raw_result(job_id: str, raw: str, usage: Usage | None) -> RawResult | ResultFrame:
    """A result carrying the upstream's body as text: kept as bytes when it reads as an
    embeddings answer (count, model, usage), else parsed into `data`."""
    body = raw.encode()
    summary = embeddings_summary(body)
    if summary is not None:
        count, model, answered = summary
        if usage is None and answered is not None:
            try:
                usage = Usage.model_validate(answered)
            except ValidationError:
                usage = None
        return RawResult(job_id, body, count, model, usage)
    try:
        data = codec.loads(body)
    except ValueError:
        data = None
    data = data if isinstance(data, dict) else None
    return ResultFrame.model_construct(type="result", job_id=job_id, data=data, usage=usage)


def add_worker_routes(app: FastAPI, gateway: Gateway, guard: Guard) -> None:
    """Install the worker dial-in WebSocket."""

    @app.websocket("/api/workers/connect")
    async def worker_connect(ws: WebSocket) -> None:
        if not guard.worker_ok(ws.headers):
            log.warning("worker connection from %s refused: bad key", client_addr(ws.client))
            await deny(ws, AuthError("invalid or missing worker key", code="invalid_worker_key"))
            return
        await ws.accept()
        await serve_dial_in(ws, worker_dial_in(gateway))
