"""Relay worker(s) for bench/overhead.py: `run_workers` with `UpstreamSettings`, own process.

By default this is the shipped RelayHandler exactly as `gatewaytui worker --upstream` runs it
(aiohttp). `--client httpx` swaps in the relay's previous HTTP client for its job POSTs —
httpx over `ShardedTransport` (bench/_support/sharded.py), as shipped until aiohttp replaced it —
so the two can be compared on one machine in one run. `--uvloop` runs the worker on uvloop.

    python bench/_support/relay.py --gateway ws://127.0.0.1:8080 --upstream http://127.0.0.1:9001
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from typing import Any

import httpx
from sharded import ShardedTransport

from gatewaytui.workers import RelayHandler, UpstreamSettings, WorkerSettings, run_workers
from gatewaytui.workers.job_handler import JobError
from gatewaytui.workers.openai_relay import _upstream_error


class HttpxRelayHandler(RelayHandler):
    """The relay with its job POSTs over httpx and sharded pools (discovery stays aiohttp)."""

    async def start(self) -> None:
        self._httpx = httpx.AsyncClient(
            transport=ShardedTransport(), timeout=self.settings.timeout_s, trust_env=False
        )
        await super().start()

    async def close(self) -> None:
        await self._httpx.aclose()
        await super().close()

    async def _post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._httpx.post(f"{self.base_url}{path}", json=body)
        except httpx.HTTPError as exc:
            raise JobError(502, f"upstream unreachable: {exc}", "upstream_unreachable") from exc
        if response.status_code >= 400:
            raise _upstream_error(response.status_code, response.text)
        data = json.loads(response.content)
        if not isinstance(data, dict):
            raise JobError(502, "upstream returned an unexpected body", "bad_upstream")
        return data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--uvloop", action="store_true", help="run the worker on uvloop")
    parser.add_argument("--client", choices=["aiohttp", "httpx"], default="aiohttp")
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
        handler = HttpxRelayHandler(upstream) if args.client == "httpx" else None
        return await run_workers(settings, install_signal_handlers=True, handler=handler)

    if args.uvloop:
        import uvloop

        raise SystemExit(uvloop.run(run()))
    raise SystemExit(asyncio.run(run()))


if __name__ == "__main__":
    main()
