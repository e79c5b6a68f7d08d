"""Errors of the client layer, and one place that turns transport failures into short text.

Operators read these messages in a status bar, so they say what happened in a few words
("connection refused", "HTTP 401: invalid or missing operator token") instead of a
traceback, and they never contain the token.
"""

from __future__ import annotations

import json
import socket
import ssl
from typing import Any

import httpx
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
    WebSocketException,
)

from gatewaytui.shared.text import http_error_text


class ClientError(Exception):
    """Base of everything the client layer raises on purpose; `message` is for humans."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class GatewayUnreachable(ClientError):
    """No HTTP answer at all: refused, unresolvable, timed out, TLS failure."""


class ActionError(ClientError):
    """The gateway answered with an error status; carries its OpenAI-style error body.

    `status` is the HTTP status (404 unknown target, 409 conflict, 401/403 auth, ...),
    `message` the gateway's own words, so a UI can show "refused: worker 'x' is gone".
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        code: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.code = code
        self.details = details or {}  # the whole `error` object (e.g. `fields`, `current`)

    @property
    def fields(self) -> dict[str, str]:
        """Per-field messages of a 422 (`{"url": "must start with http://"}`), else {}."""
        fields = self.details.get("fields")
        return {str(k): str(v) for k, v in fields.items()} if isinstance(fields, dict) else {}

    @property
    def current(self) -> dict[str, Any] | None:
        """With a 409 `revision_conflict`: the item as it is now on the gateway."""
        current = self.details.get("current")
        return current if isinstance(current, dict) else None

    @property
    def unauthorized(self) -> bool:
        """True for 401 (bad/missing token) and 403 (token lacks the operator role)."""
        return self.status in (401, 403)

    def __str__(self) -> str:
        return http_error_text(self.status, self.message)


def error_message_from_body(status: int, body: bytes | str, reason: str = "") -> str:
    """The gateway's `{"error": {"message": ...}}` text, or a short fallback for other bodies."""
    detail = error_detail_from_body(body)
    if detail.get("message"):
        return str(detail["message"])
    text = body.decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else body
    text = " ".join(text.split())[:160]
    return text or reason or f"HTTP {status}"


def error_detail_from_body(body: bytes | str) -> dict[str, Any]:
    """The `error` object of an OpenAI-style error body, or {} if the body is something else."""
    try:
        parsed = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        return {}
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict):
            return error
        if isinstance(parsed.get("detail"), str):  # a plain FastAPI error
            return {"message": parsed["detail"]}
    return {}


def describe_exception(exc: BaseException) -> str:
    """A few human words for a connection failure (no traceback, no secrets)."""
    if isinstance(exc, ActionError):
        return str(exc)
    if isinstance(exc, ClientError):
        return exc.message
    if isinstance(exc, WebSocketException):
        words = _describe_websocket(exc)
        if words is not None:
            return words
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return "timed out"
    if isinstance(exc, httpx.TransportError):
        # httpx wraps httpcore wraps anyio's "All connection attempts failed" wraps the OS
        # error: the innermost specific cause is the one worth showing.
        chain = _cause_chain(exc)
        for cause in reversed(chain[1:]):
            if isinstance(cause, OSError | TimeoutError) and type(cause) is not OSError:
                return describe_exception(cause)
        return str(chain[-1]) or str(exc) or type(exc).__name__
    if isinstance(exc, OSError):
        return _describe_os_error(exc)
    return str(exc) or type(exc).__name__


def _describe_websocket(exc: WebSocketException) -> str | None:
    if isinstance(exc, InvalidStatus):
        response = exc.response
        status = response.status_code
        message = error_message_from_body(
            status, bytes(response.body or b""), response.reason_phrase
        )
        return http_error_text(status, message)
    if isinstance(exc, InvalidURI):
        return f"invalid URL: {exc.uri}"
    if isinstance(exc, ConnectionClosed):
        rcvd = exc.rcvd
        if rcvd is None:
            return "connection lost"
        reason = f" {rcvd.reason}" if rcvd.reason else ""
        if rcvd.code == 1012:
            return "gateway restarting (1012)"
        return f"connection closed by gateway ({rcvd.code}{reason})"
    if isinstance(exc, InvalidHandshake):
        return f"not a gatewaytui gateway? WebSocket handshake failed: {exc}"
    return None


def _describe_os_error(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host ({exc.strerror or exc})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    text = str(exc)
    if text.startswith("Multiple exceptions") and "Errno 111" in text:  # IPv6 and IPv4
        return "connection refused"
    return (exc.strerror or str(exc) or type(exc).__name__).lower()


def _cause_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 20:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain
