"""HTTP and WebSocket shells of the MCP relay: `WS /api/mcp/connect` and `/mcp/{client_id}`.

MCP clients speak Streamable HTTP to `POST /mcp/{client_id}` with the gateway's API key; the
gateway forwards each JSON-RPC message to the relay registered under that id and answers with
the relay's reply, as JSON or, when the server streams, as Server-Sent Events. Every failure
is a JSON-RPC error object with a fitting HTTP status, so an MCP SDK surfaces it as an error
of the call rather than as a broken transport.

Installed by `create_app` through `add_mcp_routes`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from gatewaytui.gateway.auth import bearer_token
from gatewaytui.gateway.core import Gateway
from gatewaytui.gateway.http_guard import clean_header
from gatewaytui.gateway.hub import encode
from gatewaytui.gateway.jobs import GatewayError
from gatewaytui.gateway.json_body import parse_json
from gatewaytui.gateway.mcp.relays import (
    RPC_INVALID_REQUEST,
    RPC_PARSE_ERROR,
    RPC_RELAY_LOST,
    RPC_TIMEOUT,
    RPC_UNAUTHORIZED,
    TERMINATE_METHOD,
    DuplicateRelayError,
    MCPCall,
    MCPError,
    MCPRelays,
    call_target,
)
from gatewaytui.gateway.routes.common import (
    AuthError,
    EventStreamResponse,
    Guard,
    client_addr,
    deny,
    unless_client_leaves,
)
from gatewaytui.gateway.routes.dial_in import DialIn, frame_text, parse_frame, serve_dial_in
from gatewaytui.schema.mcp_protocol import (
    RELAY_FRAME_ADAPTER,
    RELAY_TOKEN_HEADER,
    RelayCallFrame,
    RelayEndFrame,
    RelayEventFrame,
    RelayRegisterFrame,
    RelayReplyFrame,
)

log = logging.getLogger("gatewaytui.gateway.routes.mcp")

MAX_FORWARDED_HEADERS = 16
MAX_HEADER_VALUE = 1024
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def rpc_response(
    exc: MCPError, request_id: Any = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    extra = dict(headers or {})
    if exc.status == 401:
        extra.setdefault("WWW-Authenticate", "Bearer")
    return JSONResponse(exc.body(request_id), status_code=exc.status, headers=extra)


def mcp_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Only `mcp-*` headers travel between client, relay and server (never credentials),
    and only those that are valid HTTP headers (`http_guard.clean_header`): a relay's value
    with CR/LF could otherwise not be sent, and the client would get no answer at all."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower.startswith("mcp-") and len(out) < MAX_FORWARDED_HEADERS:
            cleaned = clean_header(lower, value[:MAX_HEADER_VALUE])
            if cleaned is not None:
                out[lower] = cleaned
    return out


async def read_body(request: Request, limit: int) -> bytes:
    """The request body. `limit` (mcp.max_request_bytes) is enforced while it is read, by the
    gateway's ASGI guard (http_guard.py), which answers 413 as a JSON-RPC error."""
    del limit  # the guard's policy holds the same value
    return await request.body()


def parse_message(body: bytes) -> dict[str, Any]:
    """One JSON-RPC 2.0 request, notification or response; anything else is a 400."""
    try:
        message = parse_json(body)  # the gateway's one body parser: no lone surrogates
    except GatewayError as exc:
        raise MCPError(
            exc.message, status=400, rpc_code=RPC_PARSE_ERROR, code="parse_error"
        ) from None

    def invalid(why: str, code: str = "invalid_request") -> MCPError:
        return MCPError(why, status=400, rpc_code=RPC_INVALID_REQUEST, code=code)

    if isinstance(message, list):
        raise invalid(
            "JSON-RPC batches are not supported; send one message per request",
            "batch_not_supported",
        )
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        raise invalid('not a JSON-RPC 2.0 message (expected an object with "jsonrpc": "2.0")')
    method = message.get("method")
    if method is not None and (not isinstance(method, str) or not 0 < len(method) <= 256):
        raise invalid('"method" must be a non-empty string of at most 256 characters')
    request_id = message.get("id")
    if request_id is not None and (
        isinstance(request_id, bool) or not isinstance(request_id, str | int)
    ):
        raise invalid('"id" must be a string or an integer')
    if method is None and request_id is None:
        raise invalid("neither a request, a notification nor a response (no method, no id)")
    return message


def reply_error(frame: RelayReplyFrame) -> str | None:
    """What went wrong, if the reply is an HTTP error or a JSON-RPC error response."""
    error = (frame.message or {}).get("error")
    detail = error.get("message") if isinstance(error, dict) else None
    if frame.status >= 400:
        return f"HTTP {frame.status}" + (f": {detail}" if detail else "")
    if error is not None:
        return str(detail or error)[:500]
    return None


def _sse(message: dict[str, Any]) -> bytes:
    return b"event: message\ndata: " + encode(message).encode() + b"\n\n"


def _response_headers(frame: RelayReplyFrame | RelayEventFrame) -> dict[str, str]:
    return mcp_headers(frame.headers)


def add_mcp_routes(app: FastAPI, gateway: Gateway, guard: Guard) -> None:
    """Add the MCP relay endpoints to the gateway's app."""
    add_mcp_client_routes(app, gateway, guard)
    add_mcp_relay_route(app, gateway, guard)
    add_mcp_action_routes(app, gateway, guard)


def add_mcp_client_routes(app: FastAPI, gateway: Gateway, guard: Guard) -> None:
    """`/mcp/{client_id}`: MCP clients (Streamable HTTP) with the API key."""
    relays = gateway.mcp
    limit = gateway.config.mcp_max_request_bytes

    @app.post("/mcp/{client_id}", response_model=None)
    async def mcp_post(client_id: str, request: Request) -> Response:
        elsewhere = await _at_owner(gateway, guard, client_id, request)
        if elsewhere is not None:
            return elsewhere
        return await _post(relays, guard, limit, client_id, request)

    @app.delete("/mcp/{client_id}", response_model=None)
    async def mcp_delete(client_id: str, request: Request) -> Response:
        """The client ends its MCP session; the relay passes it to the server."""
        elsewhere = await _at_owner(gateway, guard, client_id, request)
        if elsewhere is not None:
            return elsewhere
        return await _delete(relays, guard, client_id, request)

    @app.get("/mcp/{client_id}", response_model=None)
    async def mcp_get(client_id: str, request: Request) -> Response:
        """No server-initiated stream through the relay: 405, as the transport allows."""
        try:
            _check_api_key(guard, request)
        except MCPError as exc:
            return rpc_response(exc)
        no_stream = MCPError(
            "the gateway offers no GET stream for MCP clients; use POST",
            status=405,
            rpc_code=RPC_INVALID_REQUEST,
            code="method_not_allowed",
        )
        return rpc_response(no_stream, headers={"Allow": "POST, DELETE"})


async def _at_owner(
    gateway: Gateway, guard: Guard, client_id: str, request: Request
) -> Response | None:
    """In a fleet, the answer of the replica the relay is connected to, when that is another
    one (None: answer here, as a single node does, a 404 for an unknown id included)."""
    cluster = gateway.cluster
    relay = gateway.mcp.relays.get(client_id)
    if cluster is None or (relay is not None and relay.gone_at is None):
        return None
    replica = cluster.proxy.owner(request, "mcp_clients", client_id)
    if replica is None:
        return None
    try:
        _check_api_key(guard, request)  # not an open door to the owner
        content = await request.body() if request.method == "POST" else None
        wait = gateway.config.mcp_call_timeout + gateway.config.cluster_command_timeout
        return await cluster.proxy.send(
            request, replica, wait=wait, on_stream_error=_stream_failed, content=content
        )
    except MCPError as exc:
        return rpc_response(exc)
    except ClientDisconnect:
        return Response(status_code=499)
    except GatewayError as exc:  # the owner did not answer in time, or cannot be reached
        rpc_code = RPC_TIMEOUT if exc.status == 504 else RPC_RELAY_LOST
        error = MCPError(exc.message, status=exc.status, rpc_code=rpc_code, code=exc.code or "")
        return rpc_response(error)


def _stream_failed(message: str) -> bytes:
    return _sse(
        MCPError(message, status=502, rpc_code=RPC_RELAY_LOST, code="replica_failed").body()
    )


def add_mcp_action_routes(app: FastAPI, gateway: Gateway, guard: Guard) -> None:
    """`POST /api/mcp/{client_id}/disconnect` (operator): close a relay's connection; it
    reconnects by itself. In a fleet any replica takes it and the relay's replica runs it."""

    @app.post("/api/mcp/{client_id}/disconnect")
    async def disconnect_mcp_client(client_id: str, request: Request) -> dict[str, Any]:
        guard.require_role(request.headers, "operator")
        if gateway.cluster is not None:
            return await gateway.cluster.actions.mcp_client_action(
                "disconnect_mcp_client", client_id
            )
        return (await gateway.mcp.disconnect(client_id)).model_dump(mode="json")


def _check_api_key(guard: Guard, request: Request) -> None:
    if not guard.auth.api_ok(bearer_token(request.headers)):
        raise MCPError(
            "invalid or missing API key (send Authorization: Bearer <key>)",
            status=401,
            rpc_code=RPC_UNAUTHORIZED,
            code="invalid_api_key",
        )


async def _post(
    relays: MCPRelays, guard: Guard, limit: int, client_id: str, request: Request
) -> Response:
    """One JSON-RPC message from an MCP client, forwarded to the relay named in the URL."""
    request_id: Any = None
    try:
        _check_api_key(guard, request)
        message = parse_message(await read_body(request, limit))
        method = message.get("method")
        if method is not None:
            request_id = message.get("id")
        call = relays.open_call(
            client_id,
            method or "(response)",
            request_id=request_id,
            target=call_target(message) if method else None,
            client=client_addr(request.client),
            token=request.headers.get(RELAY_TOKEN_HEADER),
        )
        call.key = guard.auth.api_key_name(bearer_token(request.headers))
    except MCPError as exc:
        return rpc_response(exc, request_id)
    except ClientDisconnect:  # gone while sending its body: nobody to answer
        return Response(status_code=499)
    frame = RelayCallFrame(
        call_id=call.id,
        message=message,
        headers=mcp_headers(request.headers),
        token=request.headers.get(RELAY_TOKEN_HEADER),
    )
    return await _run_call(relays, request, call, frame)


async def _delete(relays: MCPRelays, guard: Guard, client_id: str, request: Request) -> Response:
    try:
        _check_api_key(guard, request)
        call = relays.open_call(
            client_id,
            TERMINATE_METHOD,
            client=client_addr(request.client),
            token=request.headers.get(RELAY_TOKEN_HEADER),
            counted=False,
        )
    except MCPError as exc:
        return rpc_response(exc)
    frame = RelayCallFrame(
        call_id=call.id,
        http_method="DELETE",
        headers=mcp_headers(request.headers),
        token=request.headers.get(RELAY_TOKEN_HEADER),
    )
    return await _run_call(relays, request, call, frame)


def add_mcp_relay_route(app: FastAPI, gateway: Gateway, guard: Guard) -> None:
    """`WS /api/mcp/connect`: an MCP server's relay dials in with the worker key."""
    relays = gateway.mcp

    @app.websocket("/api/mcp/connect")
    async def mcp_connect(ws: WebSocket) -> None:
        if not guard.worker_ok(ws.headers):
            log.warning("mcp relay connection from %s refused: bad key", client_addr(ws.client))
            await deny(ws, AuthError("invalid or missing worker key", code="invalid_worker_key"))
            return
        await ws.accept()
        await serve_dial_in(ws, _relay_dial_in(relays))


async def _run_call(
    relays: MCPRelays, request: Request, call: MCPCall, frame: RelayCallFrame
) -> Response:
    """Send the call and answer with the relay's reply, or start streaming its events."""

    async def first_frame() -> Any:
        await relays.send_call(call, frame)
        return await relays.next_frame(call)

    try:
        first = await unless_client_leaves(request, first_frame())
    except MCPError as exc:
        relays.finish_call(call, error=exc.message)
        return rpc_response(exc, call.request_id)
    except GatewayError:  # the client disconnected while it waited
        relays.abandon(call)
        return Response(status_code=499)
    if isinstance(first, RelayReplyFrame):
        relays.finish_call(call, error=reply_error(first))
        headers = _response_headers(first)
        if first.message is None:
            return Response(status_code=first.status, headers=headers)
        return JSONResponse(first.message, status_code=first.status, headers=headers)
    if isinstance(first, RelayEndFrame):  # an empty stream: nothing to say
        relays.finish_call(call, error="the relay ended the answer without a message")
        return Response(status_code=202)
    relays.set_streaming(call)
    return _CallStream(
        _stream(relays, call, first),
        on_close=lambda: relays.abandon(call),
        media_type="text/event-stream",
        headers={**_SSE_HEADERS, **_response_headers(first)},
    )


class _CallStream(EventStreamResponse):
    """An SSE answer that releases its call however it ends, even if never iterated (a client
    gone before the first event leaves the generator unstarted, so its `finally` never runs)."""

    def __init__(self, content: AsyncIterator[bytes], *, on_close: Callable[[], None], **kw: Any):
        super().__init__(content, **kw)
        self._on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


async def _stream(relays: MCPRelays, call: MCPCall, first: Any) -> AsyncIterator[bytes]:
    """SSE events until the relay ends the answer; a failure ends it with a JSON-RPC error."""
    error: str | None = None
    finished = False
    try:
        frame = first
        while True:
            if isinstance(frame, RelayEventFrame | RelayReplyFrame) and frame.message:
                message = frame.message
                if "method" not in message and isinstance(message.get("error"), dict):
                    error = str(message["error"].get("message") or "error")[:500]
                yield _sse(message)
            if isinstance(frame, RelayEndFrame | RelayReplyFrame):
                finished = True
                return
            frame = await relays.next_frame(call)
    except MCPError as exc:
        error = exc.message
        finished = True
        yield _sse(exc.body(call.request_id))
    finally:
        if finished:
            relays.finish_call(call, error=error)
        else:  # the client went away (the response was cancelled)
            relays.abandon(call)


def _parse(message: Mapping[str, Any]) -> tuple[Any, int]:
    text = frame_text(message, None, "MCP relay")
    return parse_frame(RELAY_FRAME_ADAPTER, text), len(text)


def _relay_dial_in(relays: MCPRelays) -> DialIn:
    return DialIn(
        noun="mcp relay",
        parse=_parse,
        register_type=RelayRegisterFrame,
        register=relays.register,
        duplicate_error=DuplicateRelayError,
        on_frame=relays.relay_frame,
        disconnected=relays.relay_disconnected,
        events=relays.events,
        refuse_kind="mcp_refuse",
    )
