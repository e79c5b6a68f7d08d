"""An httpx transport over several small connection pools (for bench/_support/relay.py).

httpcore's pool does work proportional to the square of its connection count on every request
start and finish; at 64 concurrent requests one big pool cost the relay worker and the gateway's
backend calls milliseconds of CPU per request (bench/overhead.py, bench/backend_overhead.py).
Spreading requests over a few bounded pools keeps each pool small: the same connections in
total, a fraction of the bookkeeping.

It shipped in `gatewaytui.shared.pool` until the relay worker and then the gateway's backend
calls moved to aiohttp; it lives on here so the "httpx-relay" stack of bench/overhead.py can
still compare the two clients on one machine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from gatewaytui.shared.tls import tls_context


class ShardedTransport(httpx.AsyncBaseTransport):
    """`shards` independent pools of `per_shard` connections; a request goes to the least busy."""

    def __init__(self, shards: int = 8, per_shard: int = 16) -> None:
        limits = httpx.Limits(max_connections=per_shard, max_keepalive_connections=per_shard)
        verify = tls_context()  # one CA bundle load, not one per pool (~20 ms each)
        self._pools = [
            httpx.AsyncHTTPTransport(limits=limits, verify=verify, trust_env=False)
            for _ in range(shards)
        ]
        self._busy = [0] * shards

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        index = min(range(len(self._pools)), key=self._busy.__getitem__)
        self._busy[index] += 1
        try:
            response = await self._pools[index].handle_async_request(request)
        except BaseException:
            self._busy[index] -= 1
            raise
        response.stream = _ReleasingStream(response.stream, self._busy, index)  # type: ignore[arg-type]
        return response

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


class _ReleasingStream(httpx.AsyncByteStream):
    """The response body; closing it gives the request's slot back to its pool's count."""

    def __init__(self, stream: httpx.AsyncByteStream, busy: list[int], index: int) -> None:
        self._stream = stream
        self._busy = busy
        self._index = index
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        if not self._released:
            self._released = True
            self._busy[self._index] -= 1
        await self._stream.aclose()
