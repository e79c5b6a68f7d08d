"""The operator action routes of a clustered gateway: the same paths and answers as a
single node's, but any replica takes them and forwards them to the owner of the target."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from pydantic import ValidationError

from gatewaytui.gateway.cluster.node import ClusterNode
from gatewaytui.gateway.jobs import GatewayError
from gatewaytui.gateway.routes.common import WORKER_DRAIN_PATH, WORKER_UNDRAIN_PATH, Guard
from gatewaytui.schema.api import ServerDrainRequest, ServerUndrainRequest


async def _parse(request: Request, model: type[Any]) -> Any:
    raw = await request.body()
    try:
        return model.model_validate_json(raw) if raw.strip() else model()
    except ValidationError as exc:
        raise GatewayError(f"invalid request: {exc.errors()[0]['msg']}", status=422) from None


def add_fleet_action_routes(app: FastAPI, node: ClusterNode, guard: Guard) -> None:
    actions = node.actions

    def worker_route(path: str, action: str) -> None:
        async def handler(worker_id: str, request: Request) -> dict[str, Any]:
            guard.require_role(request.headers, "operator")
            return await actions.worker_action(action, worker_id)

        app.add_api_route(path, handler, methods=["POST"], name=path)

    worker_route(WORKER_DRAIN_PATH, "drain_worker")
    worker_route(WORKER_UNDRAIN_PATH, "undrain_worker")

    @app.post("/api/jobs/{job_id}/cancel")
    async def cancel_job(job_id: str, request: Request) -> dict[str, Any]:
        guard.require_role(request.headers, "operator")
        return await actions.cancel_job(job_id)

    async def server(
        request: Request, run: Callable[[Any], Awaitable[dict[str, Any]]], model: type[Any]
    ) -> dict[str, Any]:
        guard.require_role(request.headers, "operator")
        return await run(await _parse(request, model))

    @app.post("/api/server/drain")
    async def drain_server(request: Request) -> dict[str, Any]:
        async def run(o: ServerDrainRequest) -> dict[str, Any]:
            args = {"timeout_s": o.timeout_s, "exit_when_done": o.exit_when_done}
            return await actions.server_action("drain_server", o.scope, o.replica, args)

        return await server(request, run, ServerDrainRequest)

    @app.post("/api/server/undrain")
    async def undrain_server(request: Request) -> dict[str, Any]:
        async def run(o: ServerUndrainRequest) -> dict[str, Any]:
            return await actions.server_action("undrain_server", o.scope, o.replica, {})

        return await server(request, run, ServerUndrainRequest)
