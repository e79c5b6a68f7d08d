"""The OpenAI-compatible API at the root: `/v1/models`, `/v1/chat/completions`,
`/v1/embeddings` (API-key guarded)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.routing import Route

from gatewaytui.gateway.cluster.forward import check_forward_target
from gatewaytui.gateway.core import Gateway
from gatewaytui.gateway.history.recorder import CURRENT_JOB
from gatewaytui.gateway.routes.common import (
    Guard,
    client_addr,
    json_object,
    unless_client_leaves,
)
from gatewaytui.gateway.routes.hot import GatewayApp, JsonBytes
from gatewaytui.gateway.routes.sse import SseResponse
from gatewaytui.shared import codec


def model_list(gateway: Gateway) -> dict[str, Any]:
    """`/v1/models`: every model a live worker or a backend serves, with who serves it."""
    owners: dict[str, list[str]] = {}
    for worker in gateway.registry:
        if worker.gone_at is None:
            for model in worker.models:
                owners.setdefault(model, []).append(worker.id)
    for model, ids in gateway.backends.model_owners().items():
        owners.setdefault(model, []).extend(ids)
    if gateway.cluster is not None:  # models served by the other replicas' workers
        for model, extra in gateway.cluster.mirror.remote_models().items():
            owners.setdefault(model, []).extend(extra["owned_by"])
    created = int(gateway.started_at)
    return {
        "object": "list",
        "data": [
            {"id": model, "object": "model", "created": created, "owned_by": ",".join(ids)}
            for model, ids in sorted(owners.items())
        ],
    }


def add_openai_routes(app: FastAPI, gateway: Gateway, guard: Guard) -> None:
    """Install the OpenAI-compatible routes."""

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        guard.require_api(request.headers)
        return model_list(gateway)

    async def admit(request: Request) -> tuple[str | None, dict[str, Any], Response | None]:
        """The caller's API key (checked) and the JSON body; with them, the answer when
        another replica of the fleet served the request instead."""
        key = guard.require_api(request.headers)
        cluster = gateway.cluster
        check_forward_target(request.headers, cluster.id if cluster is not None else None)
        body = await json_object(request)
        if cluster is None:
            return key, body, None
        return key, body, await cluster.forwarder.maybe_forward(request, body)

    # The two hot routes are plain Starlette routes: FastAPI's per-request dependency solving
    # cost about a tenth of the gateway's CPU per call (bench/overhead.py) and they use none.
    async def chat_completions(request: Request) -> Response:
        started = time.perf_counter()
        key, body, forwarded = await admit(request)
        if forwarded is not None:
            return forwarded
        client = client_addr(request.client)
        job, result = await unless_client_leaves(
            request, gateway.chat(body, client=client, key=key)
        )
        if isinstance(result, dict):
            return JsonBytes(codec.dumps(result), timing_headers(gateway, job, started))  # type: ignore[return-value]
        # the headers leave before the body: what the gateway added until then
        headers = {"Cache-Control": "no-cache", "X-Job-Id": job.id}
        headers.update(timing_headers(gateway, job, started))
        return SseResponse(result, headers)  # type: ignore[return-value]

    async def embeddings(request: Request) -> Response:
        started = time.perf_counter()
        key, body, forwarded = await admit(request)
        if forwarded is not None:
            return forwarded
        client = client_addr(request.client)
        result = await unless_client_leaves(
            request, gateway.embeddings(body, client=client, key=key)
        )
        raw = result if isinstance(result, bytes) else codec.dumps(result)
        return JsonBytes(raw, timing_headers(gateway, CURRENT_JOB.get(), started))  # type: ignore[return-value]

    app.router.routes.append(Route("/v1/chat/completions", chat_completions, methods=["POST"]))
    app.router.routes.append(Route("/v1/embeddings", embeddings, methods=["POST"]))
    if isinstance(app, GatewayApp) and app.hot is not None:  # served below FastAPI's stack
        app.hot.add("/v1/chat/completions", chat_completions)
        app.hot.add("/v1/embeddings", embeddings)


def timing_headers(gateway: Gateway, job: Any, started: float) -> dict[str, str]:
    """`X-Gateway-Overhead-Us`: the time the gateway itself added (total minus upstream minus
    queue wait), and `X-Gateway-Queue-Us`: the time the request waited for a free slot."""
    if job is None:
        return {}
    return {
        "X-Job-Id": job.id,  # every proxied answer names its job, not only streams
        "X-Gateway-Overhead-Us": str(gateway.history.overhead_us(job, started)),
        "X-Gateway-Queue-Us": str(int(job.queue_wait_s * 1_000_000)),
    }
