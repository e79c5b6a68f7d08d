"""Relay worker(s) for bench/overhead.py: `run_workers` with `UpstreamSettings`, own process.

`--shards 0` runs the shipped RelayBackend exactly as `gatewaytui worker --upstream` does (one
httpx client, one connection pool). `--shards K` hands the same RelayBackend a transport that
spreads requests over K independent httpcore pools: httpcore 1.0's pool does O(connections²)
work on every request start and finish (`AsyncConnectionPool._assign_requests_to_connections`),
so at 64 concurrent requests one pool costs milliseconds of CPU per request; K small pools cost
(64/K)² each. This is the change the report proposes for relay.py, measured here without
touching the package.

`--client aiohttp` (needs `pip install aiohttp`, not a dependency of the package) sends the job
POSTs with aiohttp instead: an experiment to size the gain of switching the relay's HTTP client.

    python bench/_support/relay.py --gateway ws://127.0.0.1:8080 --upstream http://127.0.0.1:9001
"""

from __future__ import annotations

import argparse
import asyncio
import logging

import httpx

from gatewaytui.workers import RelayBackend, UpstreamSettings, WorkerSettings, run_workers
from gatewaytui.workers.backend import JobError
from gatewaytui.workers.relay import _upstream_error


class ShardedTransport(httpx.AsyncBaseTransport):
    """K independent connection pools; each request goes to the pool with the fewest in flight."""

    def __init__(self, shards: int, per_shard: int) -> None:
        limits = httpx.Limits(max_connections=per_shard, max_keepalive_connections=per_shard)
        self._pools = [httpx.AsyncHTTPTransport(limits=limits) for _ in range(shards)]
        self._busy = [0] * shards

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        i = min(range(len(self._pools)), key=self._busy.__getitem__)
        self._busy[i] += 1
        try:
            response = await self._pools[i].handle_async_request(request)
        except BaseException:
            self._busy[i] -= 1
            raise
        stream = response.stream
        busy = self._busy

        class _Counted(httpx.AsyncByteStream):
            async def __aiter__(self):  # type: ignore[override]
                async for chunk in stream:  # type: ignore[union-attr]
                    yield chunk

            async def aclose(self) -> None:
                busy[i] -= 1
                await stream.aclose()  # type: ignore[union-attr]

        response.stream = _Counted()
        return response

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


class AiohttpRelayBackend(RelayBackend):
    """The shipped relay with job POSTs over aiohttp (discovery stays on httpx)."""

    async def start(self) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
        )
        await super().start()

    async def close(self) -> None:
        await self._session.close()
        await super().close()

    async def _post_json(self, path: str, body: dict) -> dict:
        try:
            async with self._session.post(f"{self.base_url}{path}", json=body) as response:
                if response.status >= 400:
                    raise _upstream_error(response.status, await response.text())
                data = await response.json(content_type=None)
        except self._aiohttp.ClientError as exc:
            raise JobError(502, f"upstream unreachable: {exc}", "upstream_unreachable") from exc
        if not isinstance(data, dict):
            raise JobError(502, "upstream returned an unexpected body", "bad_upstream")
        return data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--shards", type=int, default=0, help="0: the shipped single pool")
    parser.add_argument("--uvloop", action="store_true", help="run the worker on uvloop")
    parser.add_argument("--client", choices=["httpx", "aiohttp"], default="httpx")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    upstream = UpstreamSettings(url=args.upstream)
    settings = WorkerSettings(
        gateway_url=args.gateway,
        id="bench-relay",
        count=args.count,
        concurrency=args.concurrency,
        upstream=upstream,
    )

    async def run() -> int:
        backend = None
        if args.client == "aiohttp":
            backend = AiohttpRelayBackend(upstream)
        elif args.shards > 0:
            total = args.count * args.concurrency
            per_shard = -(-total // args.shards) + 4
            backend = RelayBackend(upstream, transport=ShardedTransport(args.shards, per_shard))
        return await run_workers(settings, install_signal_handlers=True, backend=backend)

    if args.uvloop:
        import uvloop

        raise SystemExit(uvloop.run(run()))
    raise SystemExit(asyncio.run(run()))


if __name__ == "__main__":
    main()
