"""`WS /api/workers/connect`: workers dial in with the worker key, register, then exchange
frames (the protocol in `schema.protocol`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, WebSocket

from gatewaytui.gateway.core import Gateway
from gatewaytui.gateway.registry import DuplicateWorkerError
from gatewaytui.gateway.routes.common import AuthError, Guard, client_addr, deny
from gatewaytui.gateway.routes.dial_in import DialIn, frame_text, parse_frame, serve_dial_in
from gatewaytui.schema.protocol import WORKER_FRAME_ADAPTER, RegisterFrame

log = logging.getLogger("gatewaytui.gateway.routes.workers")


def worker_dial_in(gateway: Gateway) -> DialIn:
    """How a worker's connection maps onto the gateway's registry and job path."""
    limit = gateway.config.max_frame_bytes

    def parse(message: Mapping[str, Any]) -> tuple[Any, int]:
        text = frame_text(message, limit, "worker")
        return parse_frame(WORKER_FRAME_ADAPTER, text), len(text)

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
    )


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
