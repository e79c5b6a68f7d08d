"""HTTP and WebSocket routes: thin shells around `Gateway` (FastAPI on uvicorn)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.routing import Route
from starlette.websockets import WebSocketDisconnect, WebSocketState

import gatewaytui
from gatewaytui.gateway.auth import Auth, Role, bearer_token
from gatewaytui.gateway.backend_routes import add_backend_routes
from gatewaytui.gateway.core import Gateway
from gatewaytui.gateway.events import EventLog
from gatewaytui.gateway.hub import encode
from gatewaytui.gateway.jobs import GatewayError
from gatewaytui.gateway.registry import DuplicateWorkerError
from gatewaytui.schema.api import ServerDrainRequest
from gatewaytui.schema.protocol import (
    CLOSE_DUPLICATE_ID,
    CLOSE_POLICY_VIOLATION,
    WORKER_FRAME_ADAPTER,
    RegisterFrame,
)

log = logging.getLogger("gatewaytui.gateway.app")
T = TypeVar("T")

REGISTER_TIMEOUT_S = 10.0
CLOSE_MESSAGE_TOO_BIG = 1009  # sent by the WebSocket layer itself, above ws_max_bytes()


def ws_max_bytes(config: Any) -> int:
    """The hard WebSocket message limit (uvicorn's `ws_max_size`). Frames up to it reach the
    gateway, which closes those over `max_frame_bytes` with 1008 and a reason; the transport
    closes anything larger with 1009 before it is read."""
    return max(16 * 1024 * 1024, config.max_frame_bytes * 2, config.mcp_max_response_bytes * 2)


class AuthError(GatewayError):
    status, type, code = 401, "authentication_error", "invalid_api_key"


class ForbiddenError(GatewayError):
    status, type, code = 403, "permission_error", "forbidden"


def error_response(exc: GatewayError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


class _WsWorkerConnection:
    """Adapts a Starlette WebSocket to what the registry needs."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.closed = False

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_text(encode(frame))

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, reason=reason[:120])


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


def _client_addr(scope_client: Any) -> str | None:
    if scope_client is None:
        return None
    host, port = scope_client
    return f"{host}:{port}"


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GatewayError(f"request body is not valid JSON: {exc}", status=400) from None
    if not isinstance(body, dict):
        raise GatewayError("request body must be a JSON object", status=400)
    return body


async def _until_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _unless_client_leaves(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Run `work` in this task, cancelling it if the HTTP client disconnects first.

    One watcher task, not a task for the work as well: this is every chat request's path.
    """
    handler = asyncio.current_task()
    assert handler is not None
    left = False
    ours_pending = False  # the watcher's cancel is still counted on the task

    async def watch() -> None:
        nonlocal left, ours_pending
        await _until_disconnect(request)
        left = ours_pending = True
        handler.cancel()

    watcher = asyncio.ensure_future(watch())
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
        watcher.cancel()
        if ours_pending and handler.cancelling():  # the client left just as the work finished
            handler.uncancel()


def create_app(gateway: Gateway, auth: Auth | None = None) -> FastAPI:
    """The ASGI app for one gateway; starting the app starts the gateway's loops."""
    c = gateway.config
    auth = auth or Auth(c.api_keys, c.worker_key, c.operator_tokens, c.viewer_tokens)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    app = FastAPI(
        title="gatewaytui gateway",
        version=gatewaytui.__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.gateway = gateway
    app.state.ws_max_bytes = ws_max_bytes(c)

    @app.exception_handler(GatewayError)
    async def _gateway_error(_: Request, exc: GatewayError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(
            GatewayError(f"{where}: {first.get('msg', 'invalid request')}", status=422)
        )

    def require_api(request: Request) -> None:
        if not auth.api_ok(bearer_token(request.headers)):
            raise AuthError("invalid or missing API key (send Authorization: Bearer <key>)")

    def require_role(headers: Any, needed: Role) -> Role:
        role = auth.operator_role(bearer_token(headers))
        if role is None:
            raise AuthError("invalid or missing operator token", code="invalid_token")
        if needed == "operator" and role != "operator":
            raise ForbiddenError("this token has the viewer role; actions need an operator token")
        return role

    # ---- health ---------------------------------------------------------------------------

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": gatewaytui.__version__}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        status, reason = gateway.readiness()
        body = {"status": status.value, "reason": reason}
        return JSONResponse(body, status_code=200 if status.value == "ready" else 503)

    # ---- OpenAI-compatible API ------------------------------------------------------------

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        require_api(request)
        owners: dict[str, list[str]] = {}
        for worker in gateway.registry:
            if worker.gone_at is None:
                for model in worker.models:
                    owners.setdefault(model, []).append(worker.id)
        for model, ids in gateway.backends.model_owners().items():
            owners.setdefault(model, []).extend(ids)
        created = int(gateway.started_at)
        return {
            "object": "list",
            "data": [
                {"id": model, "object": "model", "created": created, "owned_by": ",".join(ids)}
                for model, ids in sorted(owners.items())
            ],
        }

    # The two hot routes are plain Starlette routes: FastAPI's per-request dependency solving
    # cost about a tenth of the gateway's CPU per call (bench/overhead.py) and they use none.
    async def chat_completions(request: Request) -> Response:
        require_api(request)
        body = await _json_object(request)
        client = _client_addr(request.client)
        job, result = await _unless_client_leaves(request, gateway.chat(body, client=client))
        if isinstance(result, dict):
            return JSONResponse(result)
        return EventStreamResponse(
            result,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Job-Id": job.id},
        )

    async def embeddings(request: Request) -> JSONResponse:
        require_api(request)
        body = await _json_object(request)
        client = _client_addr(request.client)
        result = await _unless_client_leaves(request, gateway.embeddings(body, client=client))
        return JSONResponse(result)

    app.router.routes.append(Route("/v1/chat/completions", chat_completions, methods=["POST"]))
    app.router.routes.append(Route("/v1/embeddings", embeddings, methods=["POST"]))

    # ---- operator API ---------------------------------------------------------------------

    @app.get("/api/state")
    async def get_state(request: Request) -> Response:
        require_role(request.headers, "viewer")
        return Response(encode(gateway.state()), media_type="application/json")

    @app.get("/api/whoami")
    async def whoami(request: Request) -> dict[str, Any]:
        """The role this token grants, so a panel can hide what it may not do."""
        return {"role": require_role(request.headers, "viewer")}

    @app.get("/api/plugins")
    async def get_plugins(request: Request) -> list[dict[str, Any]]:
        require_role(request.headers, "viewer")
        return [p.model_dump(mode="json") for p in gateway.config.options.describe()]

    def action(path: str, run: Callable[..., dict[str, Any]]) -> None:
        async def handler(request: Request) -> dict[str, Any]:
            require_role(request.headers, "operator")
            outcome = run(**request.path_params)
            target = next(iter(request.path_params.values()), None)
            return {
                "ok": True,
                "message": outcome.pop("message", ""),
                "target": target,
                "details": outcome,
            }

        app.add_api_route(path, handler, methods=["POST"], name=path)

    action("/api/workers/{worker_id}/drain", gateway.drain_worker)
    action("/api/workers/{worker_id}/undrain", gateway.undrain_worker)
    action("/api/jobs/{job_id}/cancel", gateway.cancel_job)
    action("/api/server/undrain", gateway.undrain_server)
    add_backend_routes(app, gateway, require_role)

    @app.post("/api/server/drain")
    async def drain_server(request: Request) -> dict[str, Any]:
        require_role(request.headers, "operator")
        raw = await request.body()
        try:
            options = ServerDrainRequest.model_validate_json(raw) if raw else ServerDrainRequest()
        except ValidationError as exc:
            raise GatewayError(
                f"invalid drain request: {exc.errors()[0]['msg']}", status=422
            ) from None
        outcome = gateway.drain_server(options.timeout_s, exit_when_done=options.exit_when_done)
        return {
            "ok": True,
            "message": outcome.pop("message"),
            "target": "server",
            "details": outcome,
        }

    @app.get("/metrics")
    async def metrics() -> Response:
        if not c.metrics_enabled:
            raise GatewayError("metrics are disabled (metrics.enabled=false)", status=404)
        return Response(gateway.metrics.render(), media_type="text/plain; version=0.0.4")

    # ---- WebSockets -----------------------------------------------------------------------

    async def deny(ws: WebSocket, exc: GatewayError) -> None:
        if "websocket.http.response" in ws.scope.get("extensions", {}):
            await ws.send_denial_response(error_response(exc))
        else:
            await ws.close(code=CLOSE_POLICY_VIOLATION, reason=exc.message[:120])

    @app.websocket("/api/state/stream")
    async def state_stream(ws: WebSocket) -> None:
        try:
            require_role(ws.headers, "viewer")
        except GatewayError as exc:
            await deny(ws, exc)
            return
        await ws.accept()
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

    @app.websocket("/api/workers/connect")
    async def worker_connect(ws: WebSocket) -> None:
        if not auth.worker_ok(bearer_token(ws.headers)):
            log.warning("worker connection from %s refused: bad key", _client_addr(ws.client))
            await deny(ws, AuthError("invalid or missing worker key", code="invalid_worker_key"))
            return
        await ws.accept()
        await serve_dial_in(ws, _worker_dial_in(gateway))

    from gatewaytui.gateway.mcp_http import install_mcp_routes  # it uses this module's helpers

    install_mcp_routes(app, gateway, auth)
    return app


async def _drain_incoming(ws: WebSocket) -> None:
    """Read and discard what a state-stream client sends, to notice when it leaves."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return


class FrameError(Exception):
    """A frame that breaks the protocol: the connection is closed with 1008 and why."""


class _TransportFrameError(FrameError):
    """A frame over the hard WebSocket limit: the transport has closed with 1009 already."""


def _too_big(ws: WebSocket) -> str:
    limit = getattr(ws.app.state, "ws_max_bytes", None)
    return f"frame larger than {limit} bytes" if limit else "frame over the WebSocket limit"


def _frame_text(message: dict[str, Any], limit: int) -> str:
    text = message.get("text")
    if text is None:
        raise FrameError("binary frames are not part of the worker protocol")
    if len(text) > limit // 4 and len(text.encode()) > limit:
        raise FrameError(f"frame of {len(text.encode())} bytes exceeds max_frame_bytes={limit}")
    return text


def _parse_frame(text: str) -> Any:
    try:
        return WORKER_FRAME_ADAPTER.validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise FrameError(f"malformed frame: {where}: {first.get('msg')}"[:200]) from None


@dataclass(frozen=True)
class DialIn:
    """What differs between the peers that dial in (workers, MCP relays): everything else
    about a connection — register first, then frames, closing codes, events — is shared."""

    noun: str  # "worker", "mcp relay": in close reasons and events
    parse: Callable[[dict[str, Any]], tuple[Any, int]]  # frame and its size; raises FrameError
    register_type: type
    register: Callable[[Any, Any, str | None], tuple[Any, dict[str, Any]]]
    duplicate_error: type[Exception]
    on_frame: Callable[[Any, Any, int], None]  # raises ValueError for a frame out of place
    disconnected: Callable[..., None]  # (record, reason, clean=...)
    events: EventLog
    refuse_kind: str = "refuse"
    tag_events: bool = False  # events carry worker_id


async def serve_dial_in(ws: WebSocket, peer: DialIn) -> None:
    """One dial-in connection: register, then frames until it closes or breaks a rule."""
    conn = _WsWorkerConnection(ws)
    remote = _client_addr(ws.client)
    record: Any = None
    reason = "connection closed"
    clean = False
    try:
        message = await asyncio.wait_for(ws.receive(), timeout=REGISTER_TIMEOUT_S)
        if message["type"] == "websocket.disconnect":
            if message.get("code") == CLOSE_MESSAGE_TOO_BIG:
                raise _TransportFrameError(_too_big(ws))
            return
        frame, _ = peer.parse(message)
        if not isinstance(frame, peer.register_type):
            raise FrameError("the first frame must be 'register'")
        try:
            record, reply = peer.register(frame, conn, remote)
        except peer.duplicate_error as exc:
            await conn.close(CLOSE_DUPLICATE_ID, str(exc))
            return
        await conn.send(reply)
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                code = message.get("code", 1000)
                if code == CLOSE_MESSAGE_TOO_BIG:  # the transport refused a frame, not the peer
                    raise _TransportFrameError(_too_big(ws))
                clean = code in (1000, 1001)
                reason = f"connection closed by {peer.noun} (code {code})"
                break
            frame, size = peer.parse(message)
            try:
                peer.on_frame(record, frame, size)
            except ValueError as exc:
                raise FrameError(str(exc)) from None
            if record.gone_at is not None:  # evicted while we were reading
                reason = "evicted"
                break
    except TimeoutError:
        reason = f"no register frame within {REGISTER_TIMEOUT_S:g}s"
        peer.events.add(
            peer.refuse_kind, f"{peer.noun} connection from {remote} closed: {reason}",
            level="warning",
        )  # fmt: skip
        await conn.close(CLOSE_POLICY_VIOLATION, reason)
    except FrameError as exc:
        reason = str(exc)
        who = record.id if record is not None else remote
        tags = {"worker_id": record.id if record is not None else None} if peer.tag_events else {}
        peer.events.add(
            "protocol_error", f"{peer.noun} {who} closed: {reason}", level="error", **tags
        )
        if not isinstance(exc, _TransportFrameError):  # that one is closed already (1009)
            await conn.close(CLOSE_POLICY_VIOLATION, reason)
    except WebSocketDisconnect as exc:
        reason = f"connection lost (code {exc.code})"
    except Exception as exc:  # never let one connection's bug take the server down
        log.exception("%s connection handler failed", peer.noun)
        reason = f"internal error: {type(exc).__name__}"
        await conn.close(1011, "internal error")
    finally:
        conn.closed = True
        if record is not None and record.conn is conn:  # not if a reconnect took the id over
            peer.disconnected(record, reason, clean=clean)


def _worker_dial_in(gateway: Gateway) -> DialIn:
    limit = gateway.config.max_frame_bytes

    def parse(message: dict[str, Any]) -> tuple[Any, int]:
        text = _frame_text(message, limit)
        return _parse_frame(text), len(text)

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
