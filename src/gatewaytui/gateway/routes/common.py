"""What several route areas share: error answers, the auth guards, the SSE response and
cancelling work when an HTTP client leaves."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from fastapi import Request, WebSocket
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gatewaytui.gateway.auth import Auth, Role, bearer_token
from gatewaytui.gateway.http_guard import error_body, error_headers
from gatewaytui.gateway.http_limits import when_client_leaves
from gatewaytui.gateway.jobs import GatewayError
from gatewaytui.gateway.json_body import parse_json_object
from gatewaytui.schema.protocol import CLOSE_POLICY_VIOLATION

T = TypeVar("T")


class AuthError(GatewayError):
    status, type, code = 401, "authentication_error", "invalid_api_key"


class ForbiddenError(GatewayError):
    status, type, code = 403, "permission_error", "forbidden"


def error_response(exc: GatewayError, path: str = "/api") -> JSONResponse:
    """The error in its route's format (`http_guard.error_body`: OpenAI, JSON-RPC, admin)."""
    return JSONResponse(error_body(path, exc), status_code=exc.status, headers=error_headers(exc))


_HTTP_ERROR_CODES = {
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    400: ("invalid_request_error", "invalid_request"),
}


def http_error_response(path: str, exc: StarletteHTTPException) -> JSONResponse:
    """Routing errors (404, 405 with its `Allow`) in the route's error format."""
    kind, code = _HTTP_ERROR_CODES.get(exc.status_code, ("invalid_request_error", None))
    if exc.status_code == 404:
        message = f"no route {path[:200]!r}"
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"method not allowed on {path[:200]!r}" + (
            f" (allowed: {allowed})" if allowed else ""
        )
    else:
        message = str(exc.detail)
    error = GatewayError(message, status=exc.status_code, code=code)
    error.type = kind
    return JSONResponse(
        error_body(path, error),
        status_code=exc.status_code,
        headers=error_headers(error, (exc.headers or {}).items()),
    )


@dataclass(frozen=True)
class Guard:
    """The auth checks routes call first: API key, operator/viewer token, worker key."""

    auth: Auth

    def require_api(self, headers: Mapping[str, str]) -> str | None:
        """Checks the API key; returns its name (for the usage ledger), None when open."""
        token = bearer_token(headers)
        if not self.auth.api_ok(token):
            raise AuthError("invalid or missing API key (send Authorization: Bearer <key>)")
        return self.auth.api_key_name(token)

    def require_role(self, headers: Mapping[str, str], needed: Role) -> Role:
        role = self.auth.operator_role(bearer_token(headers))
        if role is None:
            raise AuthError("invalid or missing operator token", code="invalid_token")
        if needed == "operator" and role != "operator":
            raise ForbiddenError("this token has the viewer role; actions need an operator token")
        return role

    def worker_ok(self, headers: Mapping[str, str]) -> bool:
        return self.auth.worker_ok(bearer_token(headers))


async def deny(ws: WebSocket, exc: GatewayError) -> None:
    """Refuse a WebSocket before accepting it: an HTTP answer where the server can send one."""
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(error_response(exc))
    else:
        await ws.close(code=CLOSE_POLICY_VIOLATION, reason=exc.message[:120])


class EventStreamResponse(StreamingResponse):
    """SSE that notices a client leaving even while no chunk is due.

    Starlette relies on a failing send under ASGI 2.4, so a stream waiting on a slow worker
    would not learn of the disconnect until its next chunk; listening for `http.disconnect`
    cancels the stream (and so the job on the worker) at once.
    """

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async with anyio.create_task_group() as group:

            async def stream_then_stop() -> None:
                await self.stream_response(send)
                group.cancel_scope.cancel()

            group.start_soon(stream_then_stop)
            await self.listen_for_disconnect(receive)
            group.cancel_scope.cancel()


def client_addr(scope_client: Any) -> str | None:
    """`host:port` of the peer, for events and job records."""
    if scope_client is None:
        return None
    host, port = scope_client
    return f"{host}:{port}"


async def json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object (the gateway's one parser: no lone surrogates, bad UTF-8);
    its size was limited while it was read (http_guard)."""
    return parse_json_object(await request.body())


async def unless_client_leaves(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Run `work` in this task, cancelling it if the HTTP client disconnects first (no
    second task on this path, every chat request's: `http_limits.when_client_leaves`)."""
    handler = asyncio.current_task()
    assert handler is not None
    left = False
    ours_pending = False  # the watcher's cancel is still counted on the task

    def client_left() -> None:
        nonlocal left, ours_pending
        if not handler.done():
            left = ours_pending = True
            handler.cancel()

    stop_watching = when_client_leaves(request.scope, request.receive, client_left)
    try:
        return await work
    except asyncio.CancelledError:
        if not left:
            raise
        ours_pending = False
        if handler.uncancel() > 0:  # cancelled from outside as well (shutdown): honour it
            raise
        raise GatewayError("client disconnected", status=499, code="client_closed") from None
    finally:
        stop_watching()
        if ours_pending and handler.cancelling():  # the client left just as the work finished
            handler.uncancel()


# The worker action routes, one spelling for the single node and the fleet: `{worker_id:path}`
# because a worker id may hold `/` (schema.ids), sent percent-encoded.
WORKER_DRAIN_PATH = "/api/workers/{worker_id:path}/drain"
WORKER_UNDRAIN_PATH = "/api/workers/{worker_id:path}/undrain"
