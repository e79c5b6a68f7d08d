"""`/api/backends`: list, create, read, replace, patch, delete and probe backends.

Reads need a viewer token, edits and probes an operator token. Every answer is a backend as
in the state (`BackendSnapshot`): never the key, only `api_key_set` / `api_key_env`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from gatewaytui.gateway.core import Gateway
from gatewaytui.gateway.jobs import GatewayError
from gatewaytui.gateway.json_body import parse_json_object
from gatewaytui.gateway.routes.common import Guard


async def _body(request: Request, *, optional: bool = False) -> dict[str, Any] | None:
    """The JSON object of the body; its size was limited while it was read (http_guard:
    server.max_body_bytes) and it went through the gateway's one parser."""
    raw = await request.body()
    if not raw.strip():
        if optional:
            return None
        raise GatewayError("request body must be a JSON object (a backend spec)", status=400)
    return parse_json_object(raw)


def add_backend_routes(app: FastAPI, gateway: Gateway, guard: Guard) -> None:
    """Install the backend routes: reads need a viewer token, edits an operator token."""
    backends = gateway.backends
    require_role = guard.require_role

    @app.get("/api/backends")
    async def list_backends(request: Request) -> list[dict[str, Any]]:
        require_role(request.headers, "viewer")
        return backends.items()

    @app.post("/api/backends", status_code=201)
    async def create_backend(request: Request) -> JSONResponse:
        require_role(request.headers, "operator")
        created = await backends.create(await _body(request) or {})
        return JSONResponse(created, status_code=201)

    @app.get("/api/backends/{backend_id}")
    async def get_backend(backend_id: str, request: Request) -> dict[str, Any]:
        require_role(request.headers, "viewer")
        return backends.get(backend_id)

    async def _update(backend_id: str, request: Request, *, partial: bool) -> JSONResponse:
        require_role(request.headers, "operator")
        body = await _body(request) or {}
        result, created = await backends.update(
            backend_id, body, partial=partial, if_match=request.headers.get("if-match")
        )
        return JSONResponse(result, status_code=201 if created else 200)

    @app.put("/api/backends/{backend_id}")
    async def put_backend(backend_id: str, request: Request) -> JSONResponse:
        return await _update(backend_id, request, partial=False)

    @app.patch("/api/backends/{backend_id}")
    async def patch_backend(backend_id: str, request: Request) -> JSONResponse:
        return await _update(backend_id, request, partial=True)

    @app.delete("/api/backends/{backend_id}")
    async def delete_backend(backend_id: str, request: Request) -> dict[str, Any]:
        require_role(request.headers, "operator")
        outcome = await backends.delete(backend_id, if_match=request.headers.get("if-match"))
        return {
            "ok": True,
            "message": outcome.pop("message"),
            "target": backend_id,
            "details": outcome,
        }

    @app.post("/api/backends/{backend_id}/probe")
    async def probe_backend(backend_id: str, request: Request) -> dict[str, Any]:
        require_role(request.headers, "operator")
        return await backends.probe(backend_id, await _body(request, optional=True))
