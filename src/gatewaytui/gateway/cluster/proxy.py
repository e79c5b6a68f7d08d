"""Requests about one item that lives on another replica, passed to its owner over HTTP:
an MCP client's `/mcp/{client_id}` (the relay's connection is on the owner) and a worker's
`GET /api/workers/{id}/logs` (once or followed). The owner's answer, a stream too, comes
back unchanged; the request carries `X-Gatewaytui-Forwarded-By` and is never passed on again.

Decided from the mirror in memory (never waits for Redis). No replica owns the id: the
caller answers as a single node does (404). The owner does not start answering within the
wait: 504 `owner_timeout`. The owner cannot be reached: 502 `replica_unreachable`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import httpx
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gatewaytui.gateway.cluster.commands import OwnerTimeoutError
from gatewaytui.gateway.cluster.forward import FORWARDED_BY, REPLICA_HEADER
from gatewaytui.gateway.jobs import GatewayError

if TYPE_CHECKING:
    from gatewaytui.gateway.cluster.host import FleetNode

log = logging.getLogger("gatewaytui.gateway.cluster")

# Request headers that travel to the owner (credentials included: the owner checks them
# again, every replica has the same keys); response headers that come back.
_SEND = ("authorization", "content-type", "accept", "x-relay-token")
_BACK = ("content-type", "cache-control", "x-accel-buffering", "allow", "www-authenticate")
# Builds the last event of a stream the owner broke off (each route has its own format).
StreamError = Callable[[str], bytes]


class ReplicaUnreachableError(GatewayError):
    status, type, code = 502, "server_error", "replica_unreachable"


class OwnerProxy:
    def __init__(self, node: FleetNode) -> None:
        self.node = node
        self._client: httpx.AsyncClient | None = None
        self.proxied = 0

    def client(self) -> httpx.AsyncClient:
        if self._client is None:  # reads are bounded per route (streams may idle a while)
            timeout = httpx.Timeout(None, connect=2.0)
            self._client = httpx.AsyncClient(
                timeout=timeout, limits=httpx.Limits(max_keepalive_connections=16)
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def owner(self, request: Request, collection: str, item_id: str) -> str | None:
        """The live replica that owns the item, unless the request was forwarded already."""
        if request.headers.get(FORWARDED_BY):
            return None
        replica = self.node.mirror.owner(collection, item_id)
        return replica if replica in self.node.replicas else None

    async def send(
        self,
        request: Request,
        replica: str,
        *,
        wait: float,
        on_stream_error: StreamError,
        content: bytes | None = None,
    ) -> Response:
        """`request` as the owner answers it; the owner must start answering within `wait`."""
        base = str(self.node.replicas[replica].get("advertise_url") or "").rstrip("/")
        raw = request.scope.get("raw_path")  # as sent: an id with an encoded `/` stays one
        path = raw.decode("latin-1") if isinstance(raw, bytes) else request.url.path
        url = base + path + (f"?{request.url.query}" if request.url.query else "")
        headers = {k: v for k, v in request.headers.items() if k.lower() in _SEND}
        headers.update((k, v) for k, v in request.headers.items() if k.lower().startswith("mcp-"))
        headers[FORWARDED_BY] = self.node.id
        client = self.client()
        outgoing = client.build_request(request.method, url, content=content, headers=headers)
        try:
            async with asyncio.timeout(wait):
                upstream = await client.send(outgoing, stream=True)
        except (TimeoutError, httpx.TimeoutException):
            raise OwnerTimeoutError(
                f"replica {replica!r} did not answer within {wait:g}s"
            ) from None
        except httpx.HTTPError as exc:
            log.warning("passing a request to replica %s failed: %s", replica, exc)
            raise ReplicaUnreachableError(f"replica {replica!r} cannot be reached: {exc}") from None
        self.proxied += 1
        back = {
            k: v
            for k, v in upstream.headers.items()
            if k.lower() in _BACK or k.lower().startswith("mcp-")
        }
        back[REPLICA_HEADER] = replica
        if upstream.headers.get("content-type", "").startswith("text/event-stream"):
            return StreamingResponse(
                _relay(upstream, replica, on_stream_error),
                status_code=upstream.status_code,
                headers=back,
            )
        try:
            async with asyncio.timeout(wait):
                body = await upstream.aread()
        except (TimeoutError, httpx.HTTPError) as exc:
            raise ReplicaUnreachableError(
                f"replica {replica!r} failed while answering: {exc or 'timeout'}"
            ) from None
        finally:
            await upstream.aclose()
        return Response(body, status_code=upstream.status_code, headers=back)


async def _relay(
    upstream: httpx.Response, replica: str, on_error: StreamError
) -> AsyncIterator[bytes]:
    """The owner's SSE bytes as they come; the route's own last event if the owner fails."""
    try:
        async for chunk in upstream.aiter_raw():
            yield chunk
    except httpx.HTTPError as exc:
        yield on_error(f"replica {replica} failed during the stream: {exc}")
    finally:
        await upstream.aclose()
