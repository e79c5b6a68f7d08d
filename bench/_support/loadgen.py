"""Closed-loop HTTP load generator (httpx AsyncClient, N concurrent loops), own process.

Bounded in time (warm-up + duration) and in count (--max-requests). Prints `MEASURING` when
the measured window starts, then one `RESULT {json}` line at the end.

    python bench/_support/loadgen.py --url http://127.0.0.1:9001/v1/chat/completions -c 64 -d 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import httpx

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from common import percentile


async def run(args: argparse.Namespace) -> dict:
    body = json.loads(args.body)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    measuring = False
    count = 0
    # One client (one keep-alive connection) per loop: httpcore 1.0's pool does work quadratic
    # in its connection count on every request, so one shared 64-connection pool would make
    # the load generator itself the bottleneck (milliseconds of CPU per request).
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [
        # plain http on loopback: verify=False skips loading the CA bundle 64 times
        httpx.AsyncClient(limits=limits, timeout=30.0, trust_env=False, verify=False)
        for _ in range(args.concurrency)
    ]

    async def loop(client: httpx.AsyncClient) -> None:
        nonlocal count
        while count < args.max_requests:
            t0 = time.perf_counter()
            if t0 >= stop_at_perf:
                return
            try:
                r = await client.post(args.url, json=body)
                ok = r.status_code == 200
                if not ok:
                    key = f"http_{r.status_code}"
            except httpx.HTTPError as exc:
                ok, key = False, type(exc).__name__
            dt = time.perf_counter() - t0
            if measuring:
                count += 1
                if ok:
                    latencies.append(dt)
                else:
                    errors[key] = errors.get(key, 0) + 1

    stop_at_perf = time.perf_counter() + args.warmup + args.duration
    tasks = [asyncio.create_task(loop(client)) for client in clients]
    await asyncio.sleep(args.warmup)
    measuring = True
    print("MEASURING", flush=True)
    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    for client in clients:
        await client.aclose()

    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "elapsed_s": elapsed,
        "rps": len(latencies) / elapsed if elapsed > 0 else 0.0,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p95_ms": percentile(latencies, 95) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "mean_ms": (sum(latencies) / len(latencies) * 1000) if latencies else float("nan"),
        "loadgen_cpu_s": cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("-c", "--concurrency", type=int, default=64)
    parser.add_argument("-d", "--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--max-requests", type=int, default=2_000_000)
    parser.add_argument("--body", required=True)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run(args))
    else:
        result = uvloop.run(run(args))
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
