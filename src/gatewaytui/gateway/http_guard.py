"""The ASGI guard in front of every route: what a request must be before any handler runs.

One place for the rules every HTTP route shares (docs/api.md, "Request limits"):

- `Host` must name an address the gateway serves (DNS rebinding: a page on evil.example
  that resolves to 127.0.0.1 is refused); `server.allowed_hosts` adds names.
- A cross-origin request (an `Origin` that is not the `Host` served) is refused for
  mutating methods and for WebSocket upgrades, and a mutating request that declares a
  non-JSON `Content-Type` is refused (415): the two shapes a browser page can send.
- Bodies are limited per route family WHILE they are read: `Content-Length` over the
  limit is answered 413 before a byte is read; a chunked body is counted as it arrives
  and stops at the limit (the handler never holds more than the limit).
- A body must arrive within `server.body_timeout` (408), and a client that hangs up
  mid-body costs one log line, not a traceback.
- A 413 is a lingering close: the answer goes out first, then what is left of a declared
  body (up to `LINGER_BYTES`, within `LINGER_SECONDS`) is read and dropped before the
  connection closes, so the client reads its 413 instead of a reset (closing a socket with
  unread data sends RST, which can overtake the answer). Nothing of it is kept.

Errors come in the format of the route family (`render_error`): the OpenAI envelope on
`/v1`, a JSON-RPC error on `/mcp`, the admin API's envelope elsewhere (the same shape).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import ClientDisconnect

from gatewaytui.gateway.jobs import GatewayError
from gatewaytui.gateway.log_limits import RateLimitedLog
from gatewaytui.gateway.mcp.relays import (
    RPC_INVALID_REQUEST,
    RPC_PARSE_ERROR,
    RPC_REQUEST_TOO_LARGE,
    RPC_UNAUTHORIZED,
)

log = logging.getLogger("gatewaytui.gateway.http")
_quiet = RateLimitedLog(log)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Room for the job frame's own fields around a /v1 body (`{"type":"job","job_id":…}`).
FRAME_OVERHEAD_BYTES = 4096
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "ip6-localhost"})
# After a 413, the rest of a declared body up to this size is read and dropped (not kept)
# within this time, then the connection closes; a bigger or slower one is cut (a reset).
LINGER_BYTES = 64 * 1024 * 1024
LINGER_SECONDS = 2.0


class BodyTooLargeError(GatewayError):
    status, type, code = 413, "invalid_request_error", "request_too_large"


class BodyTimeoutError(GatewayError):
    status, type, code = 408, "invalid_request_error", "request_timeout"


class RefusedRequestError(GatewayError):
    status, type, code = 403, "permission_error", "forbidden"


_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def clean_header(name: str, value: str) -> str | None:
    """A header a peer gave us, made safe to send on: None for an invalid name; the value
    without control characters (CR, LF, NUL: header injection or a refused response) and
    only if it is Latin-1 (what HTTP/1.1 headers carry)."""
    if not isinstance(name, str) or not isinstance(value, str) or not _TOKEN.match(name):
        return None
    value = _BAD_VALUE.sub("", value).strip()
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return None
    return value


def route_family(path: str) -> str:
    """`openai` (/v1), `mcp` (/mcp/…) or `admin` (everything else): the error format."""
    if path == "/v1" or path.startswith("/v1/"):
        return "openai"
    if path.startswith("/mcp/") or path == "/mcp":
        return "mcp"
    return "admin"


def _rpc_code(exc: GatewayError) -> int:
    if exc.status == 413:
        return RPC_REQUEST_TOO_LARGE
    if exc.status == 401:
        return RPC_UNAUTHORIZED
    if exc.code == "invalid_json":
        return RPC_PARSE_ERROR
    return RPC_INVALID_REQUEST


def error_body(path: str, exc: GatewayError) -> dict[str, Any]:
    """The error in the format of the route family of `path`."""
    if route_family(path) == "mcp":
        return {
            "jsonrpc": "2.0",
            "id": None,
            "error": {"code": _rpc_code(exc), "message": exc.message, "data": {"code": exc.code}},
        }
    return exc.body()


def error_headers(exc: GatewayError, extra: Iterable[tuple[str, str]] = ()) -> dict[str, str]:
    headers = dict(extra)
    if exc.status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    if exc.status in (408, 413):  # the rest of the body is not read: end the connection
        headers["Connection"] = "close"
    return headers


async def _send_error(
    send: Send,
    path: str,
    exc: GatewayError,
    extra: Iterable[tuple[str, str]] = (),
    linger: tuple[Receive, int] | None = None,
) -> None:
    """The error in the route family's format; `linger` (receive, bytes of body left) drops
    the rest of a declared body after the answer is out, so the close is not a reset."""
    body = json.dumps(error_body(path, exc), ensure_ascii=True).encode()
    headers = [
        (k.lower().encode(), v.encode("latin-1")) for k, v in error_headers(exc, extra).items()
    ]
    headers += [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    if linger is None or not 0 < linger[1] <= LINGER_BYTES:
        await send({"type": "http.response.body", "body": body})
        return
    await send({"type": "http.response.body", "body": body, "more_body": True})
    await _drop_body(*linger)
    await send({"type": "http.response.body", "body": b""})


async def _drop_body(receive: Receive, left: int) -> None:
    """Read and forget up to `left` bytes of request body, for at most LINGER_SECONDS."""
    with contextlib.suppress(TimeoutError, ClientDisconnect, OSError):
        async with asyncio.timeout(LINGER_SECONDS):
            while left > 0:
                message = await receive()
                if message["type"] != "http.request":
                    return
                left -= len(message.get("body", b""))
                if not message.get("more_body", False):
                    return


def _declared_length(scope: Scope) -> int:
    length = _headers(scope).get(b"content-length", b"")
    return int(length) if length.isdigit() else 0


@dataclass(frozen=True)
class GuardPolicy:
    """The limits and names the guard enforces (built from the gateway's options)."""

    v1_max_bytes: int
    mcp_max_bytes: int
    admin_max_bytes: int
    body_timeout: float
    allowed_hosts: frozenset[str] | None  # None: any Host (a wildcard bind, no list given)

    @classmethod
    def from_config(cls, c: Any) -> GuardPolicy:
        return cls(
            v1_max_bytes=max(c.max_frame_bytes - FRAME_OVERHEAD_BYTES, 1024),
            mcp_max_bytes=c.mcp_max_request_bytes,
            admin_max_bytes=c.max_body_bytes,
            body_timeout=c.body_timeout,
            allowed_hosts=served_hosts(c.host, c.allowed_hosts),
        )

    def limit(self, family: str) -> int:
        if family == "openai":
            return self.v1_max_bytes
        if family == "mcp":
            return self.mcp_max_bytes
        return self.admin_max_bytes


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def served_hosts(bind: str, extra: Iterable[str] = ()) -> frozenset[str] | None:
    """The host names a request's `Host` may carry: the bind address (and the loopback
    names when it is loopback) plus `server.allowed_hosts`. A wildcard bind (0.0.0.0, ::)
    without a list serves any name (a load balancer's), so it returns None."""
    names = {h.strip().lower().strip("[]") for h in extra if h.strip()}
    if "*" in names:
        return None
    host = bind.strip().lower().strip("[]")
    if host in ("0.0.0.0", "::", ""):
        return frozenset(names) if names else None
    names.add(host)
    if _is_loopback(host):
        names |= LOOPBACK_NAMES
    return frozenset(names)


def host_name(value: str) -> str:
    """`[::1]:8080` -> `::1`, `Example.com:80` -> `example.com`."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value[1:]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _headers(scope: Scope) -> dict[bytes, bytes]:
    wanted = (b"host", b"origin", b"content-type", b"content-length")
    found: dict[bytes, bytes] = {}
    for name, value in scope.get("headers", ()):
        if name in wanted and name not in found:
            found[name] = value
    return found


def _is_json_type(value: str) -> bool:
    media = value.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def check_request(policy: GuardPolicy, scope: Scope) -> GatewayError | None:
    """What is wrong with the request line and headers, before any handler runs."""
    found = _headers(scope)
    host = found.get(b"host", b"").decode("latin-1")
    if host and policy.allowed_hosts is not None and host_name(host) not in policy.allowed_hosts:
        return RefusedRequestError(
            f"Host {host[:100]!r} is not an address this gateway serves "
            "(add it to server.allowed_hosts)",
            status=421 if scope["type"] == "http" else 403,
            code="invalid_host",
        )
    websocket = scope["type"] == "websocket"
    method = scope.get("method", "GET")
    origin = found.get(b"origin")
    if origin is not None and (websocket or method in MUTATING):
        origin_text = origin.decode("latin-1").strip()
        if urlsplit(origin_text).netloc.lower() != host.strip().lower() or not host:
            return RefusedRequestError(
                f"cross-origin request from {origin_text[:100]!r} refused",
                code="cross_origin",
            )
    if websocket or method not in MUTATING:
        return None
    ctype = found.get(b"content-type")
    if ctype is not None and not _is_json_type(ctype.decode("latin-1")):
        return GatewayError(
            "request bodies must be JSON (Content-Type: application/json)",
            status=415,
            code="unsupported_media_type",
        )
    length = found.get(b"content-length", b"")
    limit = policy.limit(route_family(scope["path"]))
    if length.isdigit() and int(length) > limit:
        return BodyTooLargeError(
            f"request body of {int(length)} bytes exceeds the limit of {limit}"
        )
    return None


class HttpGuard:
    """Pure ASGI middleware (no per-request task): checks, counted and timed body reads."""

    def __init__(self, app: Callable[..., Awaitable[None]], policy: GuardPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        problem = check_request(self.policy, scope)
        if problem is not None:
            if kind == "websocket":
                await _deny_websocket(scope, receive, send, problem)
            else:
                left = _declared_length(scope) if problem.status == 413 else 0
                await _send_error(send, scope["path"], problem, linger=(receive, left))
            return
        if kind == "websocket":
            await self.app(scope, receive, send)
            return
        await self._http(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        limit = self.policy.limit(route_family(path))
        deadline = asyncio.get_running_loop().time() + self.policy.body_timeout
        received = 0
        body_done = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, body_done
            if body_done:  # after the body only http.disconnect comes: wait as long as needed
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeoutError(
                    f"request body not received within {self.policy.body_timeout:g}s"
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(f"request body exceeds the limit of {limit} bytes")
                body_done = not message.get("more_body", False)
            else:
                body_done = True
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except (BodyTooLargeError, BodyTimeoutError) as exc:
            _quiet.warning(f"{exc.status} {path}", "%s %s from %s: %s", scope.get("method"), path,
                           _peer(scope), exc.message)  # fmt: skip
            if not started:
                left = _declared_length(scope) - received if exc.status == 413 else 0
                await _send_error(send, path, exc, linger=(receive, left))
        except ClientDisconnect:
            _quiet.info(f"hangup {path}", "%s %s: client %s hung up before its body arrived",
                        scope.get("method"), path, _peer(scope))  # fmt: skip


def _peer(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "?"


async def _deny_websocket(scope: Scope, receive: Receive, send: Send, exc: GatewayError) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if "websocket.http.response" in scope.get("extensions", {}):
        body = json.dumps(exc.body()).encode()
        await send({
            "type": "websocket.http.response.start",
            "status": exc.status,
            "headers": [(b"content-type", b"application/json")],
        })  # fmt: skip
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": exc.message[:120]})
