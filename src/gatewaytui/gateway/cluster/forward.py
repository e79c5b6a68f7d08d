"""Requests across replicas: a chat or embeddings request for a model this replica cannot
serve now (no ready worker or backend for it, or all its slots busy while another replica has
free ones) goes over HTTP to the replica that can, and its answer (a stream too) comes back
unchanged. Decided from the mirror in memory: the request never waits for Redis.

A forwarded request carries `X-Gatewaytui-Forwarded-By`; a replica never forwards such a
request again (no loops). It also names the replica it is meant for
(`X-Gatewaytui-Forward-To`): a dead replica's address can be taken by another process (a new
pod on the same IP and port), and a gateway that is not that replica answers 421 instead of
serving it as its own, so the forwarder tries the next one. If no replica answers, this
replica serves the request when it can; else, while the fleet still lists a worker for the
model, the answer is a retryable 503, never a 404 for a model the fleet serves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gatewaytui.gateway.jobs import GatewayError
from gatewaytui.shared import codec

if TYPE_CHECKING:
    from gatewaytui.gateway.cluster.host import FleetNode

log = logging.getLogger("gatewaytui.gateway.cluster")

FORWARDED_BY = "x-gatewaytui-forwarded-by"
FORWARD_TO = "x-gatewaytui-forward-to"
REPLICA_HEADER = "X-Gatewaytui-Replica"
_PASS_BACK = ("content-type", "cache-control", "x-job-id", "x-gateway-overhead-us")


MISDIRECTED = 421


def check_forward_target(headers: Headers, replica_id: str | None) -> None:
    """Refuse a request forwarded to another replica (`replica_id` None: not in a fleet)."""
    meant_for = headers.get(FORWARD_TO)
    if meant_for is not None and meant_for != replica_id:
        raise GatewayError(
            f"this request was forwarded to replica {meant_for!r}; this gateway is "
            + (f"replica {replica_id!r}" if replica_id else "not in a fleet"),
            status=MISDIRECTED,
            code="misdirected_request",
        )


class Forwarder:
    def __init__(self, node: FleetNode) -> None:
        self.node = node
        self._client: httpx.AsyncClient | None = None
        self.forwarded = 0
        self._unreachable: dict[str, float] = {}  # replica -> monotonic time to try again

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

    def targets(self, model: str) -> list[str] | None:
        """The replicas that could take a request for `model`, least loaded first; None when
        no other replica lists a ready worker for it. Empty: serve it here (a free slot here,
        or every one busy or left out: a replica that refused a connection lately is probably
        dead, and the fleet forgets it when its registration expires)."""
        loads = self.node.mirror.replica_load()
        if not any(model in per_model for per_model in loads.values()):
            return None  # no other replica serves it: nothing to weigh
        scheduler = self.node.gateway.scheduler
        if scheduler.has_free_slot(model):
            return []
        ready_here = scheduler.serves(model)
        now = time.monotonic()
        ranked: list[tuple[float, str]] = []
        for replica, per_model in loads.items():
            registration = self.node.replicas.get(replica)
            slot = per_model.get(model)
            if registration is None or slot is None or registration.get("draining"):
                continue
            capacity, inflight = slot["capacity"], slot["inflight"]
            if capacity <= 0 or (ready_here and inflight >= capacity):
                continue  # busy there as well: queue here rather than elsewhere
            if self._unreachable.get(replica, 0.0) > now:
                continue
            ranked.append((inflight / capacity, replica))
        return [replica for _, replica in sorted(ranked)]

    async def maybe_forward(self, request: Request, body: dict[str, Any]) -> Response | None:
        """The other replica's answer, or None when this replica should serve the request.

        A replica that cannot be connected to (it died; the fleet has not noticed yet) is
        skipped for a TTL and the next one is tried; so is one that dropped the connection
        before answering (it died with the request, whose job died with it). When none
        answered, this replica serves the request if it knows the model, else the answer is
        a retryable 503, never a 404 for a model the fleet still serves."""
        model = body.get("model")
        if request.headers.get(FORWARDED_BY) or not isinstance(model, str):
            return None
        candidates = self.targets(model)
        if candidates is None:
            return None
        headers = {"content-type": "application/json", FORWARDED_BY: self.node.id}
        auth = request.headers.get("authorization")
        if auth:
            headers["authorization"] = auth
        content = codec.dumps(body)
        client = self.client()
        for replica in candidates:
            registration = self.node.replicas.get(replica) or {}
            base = str(registration.get("advertise_url") or "").rstrip("/")
            outgoing = client.build_request(
                "POST", base + request.url.path, content=content, headers=headers
            )
            outgoing.headers[FORWARD_TO] = replica
            try:
                upstream = await client.send(outgoing, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                self._skip(replica, f"unreachable ({exc})")
                continue
            except httpx.TimeoutException as exc:  # it took the request and never answered
                raise GatewayError(
                    f"replica {replica} did not answer in time ({exc})",
                    status=504,
                    code="replica_timeout",
                ) from None
            except httpx.HTTPError as exc:  # it died with the request: its job died too
                log.warning("replica %s dropped a forwarded request (%s): retrying", replica, exc)
                continue
            if upstream.status_code == MISDIRECTED:
                await upstream.aclose()
                self._skip(replica, f"not at {base} any more (another gateway answered)")
                continue
            return await self._answer(upstream, replica)
        gateway = self.node.gateway
        family = gateway.config.model_family_matching
        if gateway.registry.knows_model(model, family) or gateway.backends.knows_model(model):
            return None  # this replica can queue it for its own workers
        raise GatewayError(
            f"no replica serving {model!r} could be reached right now; retry shortly",
            status=503,
            code="replica_unavailable",
        )

    def _skip(self, replica: str, why: str) -> None:
        """Leave `replica` out for a TTL: by then the fleet forgot it, or it answers again."""
        self._unreachable[replica] = time.monotonic() + self.node.config.cluster_replica_ttl
        log.warning("replica %s %s: trying another", replica, why)

    async def _answer(self, upstream: httpx.Response, replica: str) -> Response:
        """The other replica's answer, streamed through when it streams."""
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
