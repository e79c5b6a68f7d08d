"""The MCP relay in the call path: added latency, calls/s, and how fast a lost relay fails calls.

Processes on loopback: the gateway (`gatewaytui serve`), the relay (`gatewaytui mcp-relay`)
running the demo MCP server of the tests (`tests/support/mcp_demo_server.py`, built with the
official `mcp` SDK) over stdio, and this script as the MCP client, POSTing JSON-RPC
`tools/call add` to `/mcp/bench` with httpx.

Windows:
  direct    the same demo server driven in this process through the relay's own stdio bridge
            (StdioUpstream, no gateway, no WebSocket): the server's own cost
  relay c1  one call at a time through gateway -> relay -> server
  relay c16 16 concurrent callers for a fixed time (calls/s)
  lost      a `hold` call in flight, the relay killed with SIGKILL: time until the client
            has its JSON-RPC error (repeated; a new relay each time)

    python bench/mcp_relay.py          # ~40 s
    python bench/mcp_relay.py --quick  # ~12 s
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent / "_support"))
from common import PYTHON, REPO, Proc, free_port, gateway_argv, header, percentile, verdict

from gatewaytui.schema.mcp_protocol import RelayCallFrame
from gatewaytui.workers.mcp_upstream import StdioUpstream

SERVER = [PYTHON, str(REPO / "tests" / "support" / "mcp_demo_server.py")]
ADD = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
       "params": {"name": "add", "arguments": {"a": 2, "b": 40}}}  # fmt: skip
HOLD = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "hold", "arguments": {"seconds": 60}}}  # fmt: skip


def ms_line(label: str, samples: list[float]) -> str:
    s = sorted(samples)
    return (
        f"   {label:<10} n={len(s):<5} p50 {percentile(s, 50) * 1000:6.2f} ms  "
        f"p95 {percentile(s, 95) * 1000:6.2f} ms  p99 {percentile(s, 99) * 1000:6.2f} ms"
    )


async def direct(n: int) -> list[float]:
    """The demo server through StdioUpstream in this process: no gateway, no WebSocket."""
    async with StdioUpstream(SERVER) as upstream:
        while not upstream.ready:
            await asyncio.sleep(0.01)
        got: list[object] = []

        async def emit(frame: object) -> None:
            got.append(frame)

        samples = []
        for i in range(n):
            call = RelayCallFrame(call_id=f"c{i}", message=ADD)
            started = time.perf_counter()
            await upstream.handle(call, emit)
            samples.append(time.perf_counter() - started)
        return samples


def start_relay(port: int, name: str) -> Proc:
    argv = [PYTHON, "-m", "gatewaytui.cli.main", "--log-level", "warning", "mcp-relay",
            "--gateway", f"127.0.0.1:{port}", "--id", "bench", "--", *SERVER]  # fmt: skip
    return Proc(name, argv)


def wait_relay(base: str, proc: Proc, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.check()
        clients = httpx.get(f"{base}/api/state", timeout=5).json()["mcp"]["clients"]
        if any(c["id"] == "bench" and c["status"] in ("idle", "working") for c in clients):
            return
        time.sleep(0.05)
    raise RuntimeError(f"the relay did not come up; log:\n{proc.tail()}")


def sequential(base: str, n: int) -> list[float]:
    samples = []
    with httpx.Client(timeout=30) as client:
        for _ in range(n):
            started = time.perf_counter()
            reply = client.post(f"{base}/mcp/bench", json=ADD)
            samples.append(time.perf_counter() - started)
            assert reply.json()["result"]["structuredContent"] == {"result": 42}, reply.text
    return samples


async def concurrent(base: str, callers: int, seconds: float) -> tuple[int, list[float], float]:
    samples: list[float] = []
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=callers)

    async def caller(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            reply = await client.post(f"{base}/mcp/bench", json=ADD)
            reply.raise_for_status()
            samples.append(time.perf_counter() - started)

    began = time.monotonic()
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await asyncio.gather(*(caller(client) for _ in range(callers)))
    return len(samples), samples, time.monotonic() - began


def lost(base: str, port: int, rounds: int) -> list[float]:
    """SIGKILL the relay under a call in flight; time until the client holds its error."""
    samples = []
    for n in range(rounds):
        relay = start_relay(port, f"mcp-relay-lost{n}")
        try:
            wait_relay(base, relay)
            answer: list[httpx.Response] = []
            done = threading.Event()

            def call(answer: list[httpx.Response], done: threading.Event) -> None:
                answer.append(httpx.post(f"{base}/mcp/bench", json=HOLD, timeout=60))
                done.set()

            threading.Thread(target=call, args=(answer, done), daemon=True).start()
            while True:  # the call has reached the relay when the gateway lists it
                sessions = httpx.get(f"{base}/api/state", timeout=5).json()["mcp"]["sessions"]
                if any(s["method"] == "tools/call" for s in sessions):
                    break
                time.sleep(0.01)
            started = time.perf_counter()
            relay.popen.send_signal(signal.SIGKILL)
            done.wait(60)
            samples.append(time.perf_counter() - started)
            error = answer[0].json()["error"]["data"]["code"]
            assert error == "relay_lost", answer[0].text
        finally:
            relay.stop()
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds: smoke test")
    args = parser.parse_args()
    n, seconds, rounds = (200, 2.0, 2) if args.quick else (2000, 10.0, 5)
    header("MCP relay: gateway -> relay -> stdio MCP server (tools/call)")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    gateway = Proc("mcp-gateway", gateway_argv(port))
    relay = start_relay(port, "mcp-relay")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                gateway.check()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        wait_relay(base, relay)
        base_direct = asyncio.run(direct(n))
        print(ms_line("direct", base_direct))
        sequential(base, 50)  # warm up
        through = sequential(base, n)
        print(ms_line("relay c1", through))
        count, samples, took = asyncio.run(concurrent(base, 16, seconds))
        print(ms_line("relay c16", samples) + f"  {count / took:7.0f} calls/s")
        relay.stop()
        lost_after = lost(base, port, rounds)
        print(ms_line("lost", lost_after))
        state = httpx.get(f"{base}/api/state", timeout=5).json()
        print("   gateway counters:", json.dumps(state["mcp"]["clients"][0]["functions"]))
        added = percentile(sorted(through), 50) - percentile(sorted(base_direct), 50)
        verdict("added p50 latency, one call at a time", added * 1000, 5.0, "ms",
                higher_is_better=False)  # fmt: skip
        verdict("relay SIGKILL -> client error, worst", max(lost_after) * 1000, 1000.0, "ms",
                higher_is_better=False)  # fmt: skip
    finally:
        relay.stop()
        gateway.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
