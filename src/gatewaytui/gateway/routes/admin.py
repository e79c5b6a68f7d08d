"""The operator surface: health, `/api/state` and its stream, whoami, plugins, the actions
(drain/undrain a worker or the server, cancel a job) and `/metrics`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect, WebSocketState

import gatewaytui
from gatewaytui.gateway.core import Gateway
from gatewaytui.gateway.hub import encode
from gatewaytui.gateway.jobs import GatewayError
from gatewaytui.gateway.json_body import parse_json
from gatewaytui.gateway.openapi_extra import path_parameters
from gatewaytui.gateway.routes.common import WORKER_DRAIN_PATH, WORKER_UNDRAIN_PATH, Guard, deny
from gatewaytui.schema.api import ActionResult, ServerDrainRequest
from gatewaytui.schema.ids import is_worker_id

log = logging.getLogger("gatewaytui.gateway.routes.admin")


def add_health_routes(app: FastAPI, gateway: Gateway) -> None:
    """`/healthz` (alive) and `/readyz` (503 while draining or with no capacity): no auth."""

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": gatewaytui.__version__}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        status, reason = gateway.readiness()
        body = {"status": status.value, "reason": reason}
        return JSONResponse(body, status_code=200 if status.value == "ready" else 503)


def add_state_routes(app: FastAPI, gateway: Gateway, guard: Guard) -> None:
    """What a viewer may read: the state, its role, the plugins."""

    @app.get("/api/state")
    async def get_state(request: Request) -> Response:
        guard.require_role(request.headers, "viewer")
        return Response(encode(gateway.state()), media_type="application/json")

    @app.get("/api/whoami")
    async def whoami(request: Request) -> dict[str, Any]:
        """The role this token grants, so a panel can hide what it may not do."""
        return {"role": guard.require_role(request.headers, "viewer")}

    @app.get("/api/plugins")
    async def get_plugins(request: Request) -> list[dict[str, Any]]:
        guard.require_role(request.headers, "viewer")
        return [p.model_dump(mode="json") for p in gateway.config.options.describe()]


def add_action_routes(app: FastAPI, gateway: Gateway, guard: Guard) -> None:
    """Operator actions on workers, jobs and the server (operator token)."""

    def action(path: str, run: Callable[..., ActionResult]) -> None:
        async def handler(request: Request) -> dict[str, Any]:
            guard.require_role(request.headers, "operator")
            worker_id = request.path_params.get("worker_id")
            if worker_id is not None and not is_worker_id(worker_id):  # the schema's one rule
                raise GatewayError(
                    f"{worker_id[:140]!r} is not a worker id", status=404, code="not_found"
                )
            return run(**request.path_params).model_dump(mode="json")

        app.add_api_route(
            path, handler, methods=["POST"], name=path, openapi_extra=path_parameters(path)
        )

    action(WORKER_DRAIN_PATH, gateway.drain_worker)
    action(WORKER_UNDRAIN_PATH, gateway.undrain_worker)
    action("/api/jobs/{job_id}/cancel", gateway.cancel_job)
    action("/api/server/undrain", gateway.undrain_server)


def add_server_drain_route(app: FastAPI, gateway: Gateway, guard: Guard) -> None:
    """`POST /api/server/drain` with an optional body (timeout, exit when done)."""

    @app.post("/api/server/drain")
    async def drain_server(request: Request) -> dict[str, Any]:
        guard.require_role(request.headers, "operator")
        raw = await request.body()
        try:
            options = (
                ServerDrainRequest.model_validate(parse_json(raw))
                if raw.strip()
                else ServerDrainRequest()
            )
        except ValidationError as exc:
            raise GatewayError(
                f"invalid drain request: {exc.errors()[0]['msg']}", status=422
            ) from None
        result = gateway.drain_server(options.timeout_s, exit_when_done=options.exit_when_done)
        return result.model_dump(mode="json")


def add_metrics_route(app: FastAPI, gateway: Gateway) -> None:
    """`/metrics` in Prometheus text format (404 when metrics are disabled)."""

    @app.get("/metrics")
    async def metrics() -> Response:
        if not gateway.config.metrics_enabled:
            raise GatewayError("metrics are disabled (metrics.enabled=false)", status=404)
        return Response(gateway.metrics.render(), media_type="text/plain; version=0.0.4")


def add_state_stream_route(app: FastAPI, gateway: Gateway, guard: Guard) -> None:
    """`WS /api/state/stream`: one snapshot, then sequenced deltas (the hub serves them)."""

    @app.websocket("/api/state/stream")
    async def state_stream(ws: WebSocket) -> None:
        try:
            guard.require_role(ws.headers, "viewer")
        except GatewayError as exc:
            await deny(ws, exc)
            return
        await ws.accept()
        await _serve_state_stream(ws, gateway)


async def _serve_state_stream(ws: WebSocket, gateway: Gateway) -> None:
    reader = asyncio.ensure_future(_drain_incoming(ws))
    sender = asyncio.ensure_future(gateway.hub.serve(ws.send_text))
    try:
        done, _ = await asyncio.wait({reader, sender}, return_when=asyncio.FIRST_COMPLETED)
        failure = sender.exception() if sender in done else None
        if failure is not None and not isinstance(
            failure, WebSocketDisconnect | ConnectionError | RuntimeError
        ):
            log.error("state stream sender failed", exc_info=failure)
    finally:
        for task in (reader, sender):
            task.cancel()
        for task in (reader, sender):
            with contextlib.suppress(BaseException):
                await task
        if ws.application_state != WebSocketState.DISCONNECTED:
            with contextlib.suppress(Exception):
                await ws.close()


async def _drain_incoming(ws: WebSocket) -> None:
    """Read and discard what a state-stream client sends, to notice when it leaves."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
