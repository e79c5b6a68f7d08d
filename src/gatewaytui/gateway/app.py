"""The gateway's ASGI app (FastAPI on uvicorn): lifespan, error handlers, and the routes of
each area installed from `gateway.routes` — the routes are thin shells around `Gateway`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import gatewaytui
from gatewaytui.gateway.auth import Auth
from gatewaytui.gateway.config import GatewayConfig
from gatewaytui.gateway.core import Gateway
from gatewaytui.gateway.history.routes import add_history_routes
from gatewaytui.gateway.http_guard import GuardPolicy, HttpGuard
from gatewaytui.gateway.jobs import GatewayError
from gatewaytui.gateway.openapi_extra import describe_plain_routes
from gatewaytui.gateway.routes import admin
from gatewaytui.gateway.routes.backends import add_backend_routes
from gatewaytui.gateway.routes.common import Guard, error_response, http_error_response
from gatewaytui.gateway.routes.hot import GatewayApp, HotRoutes
from gatewaytui.gateway.routes.mcp import add_mcp_routes
from gatewaytui.gateway.routes.openai import add_openai_routes
from gatewaytui.gateway.routes.worker_logs import add_worker_log_routes
from gatewaytui.gateway.routes.workers import add_worker_routes


def ws_max_bytes(config: GatewayConfig) -> int:
    """The hard WebSocket message limit (uvicorn's `ws_max_size`). Frames up to it reach the
    gateway, which closes those over `max_frame_bytes` with 1008 and a reason; the transport
    closes anything larger with 1009 before it is read."""
    return max(16 * 1024 * 1024, config.max_frame_bytes * 2, config.mcp_max_response_bytes * 2)


def _add_error_handlers(app: FastAPI) -> None:
    """Every error is a JSON error body with its status, in its route's format (OpenAI on
    /v1, JSON-RPC on /mcp, the admin envelope elsewhere): routing errors (404, 405) too."""

    @app.exception_handler(GatewayError)
    async def _gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
        return error_response(exc, request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return http_error_response(request.url.path, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(
            GatewayError(f"{where}: {first.get('msg', 'invalid request')}", status=422),
            request.url.path,
        )


def create_app(gateway: Gateway, auth: Auth | None = None) -> FastAPI:
    """The ASGI app for one gateway; starting the app starts the gateway's loops."""
    c = gateway.config
    guard = Guard(auth or Auth.from_config(c))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    app = GatewayApp(
        title="gatewaytui gateway",
        version=gatewaytui.__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # FastAPI's native OpenTelemetry looks up three providers (environment reads) on every
        # request to learn it has nothing to do: 5 % of a stream's samples in a profile.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.gateway = gateway
    app.state.ws_max_bytes = ws_max_bytes(c)
    policy = GuardPolicy.from_config(c)
    app.add_middleware(HttpGuard, policy=policy)  # limits, Host, Origin
    app.hot = HotRoutes(policy)  # /v1 chat and embeddings: the guard, then the handler
    _add_error_handlers(app)
    admin.add_health_routes(app, gateway)
    add_openai_routes(app, gateway, guard)
    admin.add_state_routes(app, gateway, guard)
    if gateway.cluster is not None:  # any replica takes an action; the owner runs it
        from gatewaytui.gateway.cluster.routes import add_fleet_action_routes

        add_fleet_action_routes(app, gateway.cluster, guard)
    else:
        admin.add_action_routes(app, gateway, guard)
        admin.add_server_drain_route(app, gateway, guard)
    add_backend_routes(app, gateway, guard)
    add_history_routes(app, gateway, guard.require_role)
    admin.add_metrics_route(app, gateway)
    admin.add_state_stream_route(app, gateway, guard)
    add_worker_routes(app, gateway, guard)
    add_worker_log_routes(app, gateway, guard)
    add_mcp_routes(app, gateway, guard)
    describe_plain_routes(app)
    return app
