"""Requests across replicas: a chat or embeddings request for a model this replica cannot
serve now (no ready worker or backend for it, or all its slots busy while another replica has
free ones) goes over HTTP to the replica that can, and its answer (a stream too) comes back
unchanged. Decided from the mirror in memory: the request never waits for Redis.

A forwarded request carries `X-Gatewaytui-Forwarded-By`; a replica never forwards such a
request again (no loops). If the other replica cannot be reached before it answers, this
replica handles the request itself (the usual local answer: queue, or 404 for the model).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gatewaytui.gateway.jobs import GatewayError
from gatewaytui.shared import codec

if TYPE_CHECKING:
    from gatewaytui.gateway.cluster.node import ClusterNode

log = logging.getLogger("gatewaytui.gateway.cluster")

FORWARDED_BY = "x-gatewaytui-forwarded-by"
REPLICA_HEADER = "X-Gatewaytui-Replica"
_PASS_BACK = ("content-type", "cache-control", "x-job-id", "x-gateway-overhead-us")


class Forwarder:
    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        self._client: httpx.AsyncClient | None = None
        self.forwarded = 0

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            timeout = httpx.Timeout(self.node.config.request_timeout, connect=2.0)
            self._client = httpx.AsyncClient(
                timeout=timeout, limits=httpx.Limits(max_keepalive_connections=64)
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def target(self, model: str) -> str | None:
        """The replica to send a request for `model` to, or None to serve it here."""
        loads = self.node.mirror.replica_load()
        if not any(model in per_model for per_model in loads.values()):
            return None  # no other replica serves it: nothing to weigh
        live = self.node.gateway.live
        live.refresh_derived()
        here = live.models.get(model)
        ready_here = 0
        free_here = 0
        if here is not None:
            ready_here = int(here.get("ready_workers") or 0) + int(here.get("ready_backends") or 0)
            free_here = int(here.get("capacity") or 0) - int(here.get("inflight") or 0)
        if ready_here and free_here > 0:
            return None
        best: tuple[float, str] | None = None
        for replica, per_model in loads.items():
            registration = self.node.replicas.get(replica)
            slot = per_model.get(model)
            if registration is None or slot is None or registration.get("draining"):
                continue
            capacity, inflight = slot["capacity"], slot["inflight"]
            if capacity <= 0 or (ready_here and inflight >= capacity):
                continue  # busy there as well: queue here rather than elsewhere
            load = inflight / capacity
            if best is None or load < best[0]:
                best = (load, replica)
        return best[1] if best is not None else None

    async def maybe_forward(self, request: Request, body: dict[str, Any]) -> Response | None:
        """The other replica's answer, or None when this replica should serve the request."""
        model = body.get("model")
        if request.headers.get(FORWARDED_BY) or not isinstance(model, str):
            return None
        replica = self.target(model)
        if replica is None:
            return None
        base = str(self.node.replicas[replica].get("advertise_url") or "").rstrip("/")
        headers = {"content-type": "application/json", FORWARDED_BY: self.node.id}
        auth = request.headers.get("authorization")
        if auth:
            headers["authorization"] = auth
        client = self.client()
        outgoing = client.build_request(
            "POST", base + request.url.path, content=codec.dumps(body), headers=headers
        )
        try:
            upstream = await client.send(outgoing, stream=True)
        except httpx.HTTPError as exc:
            log.warning("forwarding to replica %s failed (%s): serving here", replica, exc)
            return None
        self.forwarded += 1
        back = {k: v for k, v in upstream.headers.items() if k.lower() in _PASS_BACK}
        back[REPLICA_HEADER] = replica
        if upstream.headers.get("content-type", "").startswith("text/event-stream"):
            return StreamingResponse(
                _relay(upstream, replica), status_code=upstream.status_code, headers=back
            )
        try:
            content = await upstream.aread()
        except httpx.HTTPError as exc:
            raise GatewayError(
                f"replica {replica} failed while answering: {exc}",
                status=502,
                code="replica_failed",
            ) from None
        finally:
            await upstream.aclose()
        return Response(content, status_code=upstream.status_code, headers=back)


async def _relay(upstream: httpx.Response, replica: str) -> AsyncIterator[bytes]:
    """The other replica's SSE bytes as they come; an OpenAI-style error event if it fails."""
    try:
        async for chunk in upstream.aiter_raw():
            yield chunk
    except httpx.HTTPError as exc:
        error = GatewayError(
            f"replica {replica} failed during the stream: {exc}", status=502, code="replica_failed"
        )
        yield b"data: " + codec.dumps(error.body()) + b"\n\n"
    finally:
        await upstream.aclose()
