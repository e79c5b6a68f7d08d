"""The two hot routes (`POST /v1/chat/completions`, `POST /v1/embeddings`) served below
FastAPI/Starlette: the request meets the ASGI guard and then its handler, nothing else.

Why: a profile of the gateway under non-stream chat at c=64 had ~10 % of its samples in the
layers every request crosses on its way to a route (FastAPI's ServerError, ExceptionTelemetry,
AppBodyLimit, Exception and AsyncExitStack middlewares, the router's match of every route)
and in Starlette's `Response` header handling. Those layers do nothing for these two routes:
`HttpGuard` (Host, Origin, Content-Type, body size and deadline, client hang-up) stays in
front, the handlers' `GatewayError` becomes the same OpenAI error body the app's exception
handler writes, and anything else reaches uvicorn, which logs it and answers 500 as
Starlette's error middleware did. Every other method or path (a `GET` here: 405) goes
through the app as before, and the routes stay in the app's router (OpenAPI, `Allow`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request

from gatewaytui.gateway.http_guard import GuardPolicy, HttpGuard, Receive, Scope, Send
from gatewaytui.gateway.jobs import GatewayError
from gatewaytui.gateway.routes.common import error_response

Endpoint = Callable[[Request], Awaitable[Any]]

JSON_TYPE = (b"content-type", b"application/json")


class JsonBytes:
    """A JSON answer already encoded: one header list built once, start and body sent."""

    __slots__ = ("body", "raw_headers")

    def __init__(self, body: bytes, headers: dict[str, str]) -> None:
        self.body = body
        raw = [(b"content-length", str(len(body)).encode()), JSON_TYPE]
        for name, value in headers.items():
            raw.append((name.lower().encode("latin-1"), value.encode("latin-1")))
        self.raw_headers = raw

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body})


class HotRoutes:
    """POST endpoints by exact path, each behind its own `HttpGuard`."""

    def __init__(self, policy: GuardPolicy) -> None:
        self.endpoints: dict[str, Endpoint] = {}
        self.guarded = HttpGuard(self._dispatch, policy)

    def add(self, path: str, endpoint: Endpoint) -> None:
        self.endpoints[path] = endpoint

    def serves(self, scope: Scope) -> bool:
        return (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] in self.endpoints
            and not scope.get("root_path")
        )

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        try:
            response = await self.endpoints[path](Request(scope, receive))
        except GatewayError as exc:
            response = error_response(exc, path)
        await response(scope, receive, send)


class GatewayApp(FastAPI):
    """FastAPI with the hot routes dispatched before its middleware stack."""

    hot: HotRoutes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot = self.hot
        if hot is not None and hot.serves(scope):
            scope["app"] = self
            await hot.guarded(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
