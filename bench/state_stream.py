"""State stream cost at 5,000 workers with 10 % churn per second: deltas vs full snapshots.

One process: a real gateway server (uvicorn on loopback) whose `Gateway` is driven directly.
5,000 workers are admitted through `gateway.worker_registered` with a stub connection (1-3
models each, varied concurrency); then every 100 ms a tenth of 10 % of them change, so 10 % of
the fleet changes per second:
  60 % heartbeats with new cpu/mem figures  (gateway.worker_frame(HeartbeatFrame))
  30 % in-flight changes                     (scheduler.pick for a model / release a slot)
  10 % status flips ready <-> not ready      (gateway.worker_frame(StatusFrame); adds events)
A real WebSocket client on `WS /api/state/stream` counts the bytes of every message.

Compared with what a polling dashboard would move: the size of `GET /api/state` times the
number of deltas per second (same cadence), and one full snapshot per second. Target: delta
bytes <= 10 % of the repeated full snapshots. Also reported: the time the hub spends per tick
diffing and encoding a delta (`StateHub.flush`, including `LiveState.refresh_derived`), and an
estimate of the bytes with permessage-deflate (zlib with context takeover, as browsers and
the websockets library would negotiate it).

    python bench/state_stream.py           # ~35 s
    python bench/state_stream.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent / "_support"))
from common import header, percentile, verdict

from gatewaytui.gateway.config import GatewayConfig
from gatewaytui.gateway.core import Gateway
from gatewaytui.gateway.registry import WorkerRecord
from gatewaytui.gateway.server import bind_socket, make_server, serve_started
from gatewaytui.schema.protocol import HeartbeatFrame, RegisterFrame, StatusFrame
from gatewaytui.schema.state import HostInfo

MODELS = [
    f"{base}-{quant}"
    for base in ("llama3:8b", "qwen2.5:7b", "mistral:7b", "gemma2:9b", "phi3:mini", "bge-m3:567m")
    for quant in ("q4_K_M", "q8_0")
]


class StubConn:
    """Stands in for a worker's WebSocket: the gateway may send frames; they go nowhere."""

    async def send(self, frame: dict[str, Any]) -> None:
        return None

    async def close(self, code: int, reason: str) -> None:
        return None


class Timed:
    """Wraps a callable and keeps the duration of every call (ns)."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.ns: list[int] = []

    def __call__(self, *a: Any) -> Any:
        t = time.perf_counter_ns()
        try:
            return self.fn(*a)
        finally:
            self.ns.append(time.perf_counter_ns() - t)


def register_fleet(gateway: Gateway, n: int, rng: random.Random) -> list[WorkerRecord]:
    host = HostInfo(hostname="bench", os="Linux", arch="x86_64", cpu_count=16, mem_total_mb=65536)
    workers = []
    for i in range(n):
        frame = RegisterFrame(
            id=f"w{i:05d}",
            name=f"worker-{i:05d}",
            models=rng.sample(MODELS, rng.randint(1, 3)),
            max_concurrency=rng.choice([1, 2, 4, 8, 16]),
            version="0.1.0",
            host=host,
            labels={"zone": rng.choice(["a", "b", "c"]), "pool": "bench"},
        )
        remote = f"10.0.{i // 250}.{i % 250}:{40000 + i}"
        worker, _ = gateway.worker_registered(frame, StubConn(), remote)
        gateway.worker_frame(worker, HeartbeatFrame(cpu_percent=10.0, mem_percent=20.0))
        workers.append(worker)
    return workers


class Churn:
    """Changes `rate` of the fleet per second, in 10 slices per second."""

    def __init__(
        self,
        gateway: Gateway,
        workers: list[WorkerRecord],
        rate: float,
        seed: int,
        heartbeat_all: float = 0.0,
    ):
        self.gateway = gateway
        self.workers = workers
        self.per_slice = max(1, round(len(workers) * rate / 10))
        # optional liveness heartbeats of the whole fleet (every `heartbeat_all` seconds)
        self.beats_per_slice = round(len(workers) / heartbeat_all / 10) if heartbeat_all else 0
        self._beat_next = 0
        self.rng = random.Random(seed)
        self.held: list[WorkerRecord] = []
        self.counts = {
            "heartbeat": 0,
            "pick": 0,
            "release": 0,
            "status": 0,
            "none": 0,
            "liveness": 0,
        }

    def one(self, worker: WorkerRecord) -> None:
        g, rng = self.gateway, self.rng
        roll = rng.random()
        if roll < 0.6:
            beat = HeartbeatFrame(
                cpu_percent=round(rng.uniform(0, 100), 1), mem_percent=round(rng.uniform(5, 95), 1)
            )
            g.worker_frame(worker, beat)
            self.counts["heartbeat"] += 1
        elif roll < 0.9:
            if self.held and (rng.random() < 0.5 or len(self.held) > len(self.workers) // 4):
                held = self.held.pop(rng.randrange(len(self.held)))
                g.queue.free_slot(held)
                self.counts["release"] += 1
            else:
                picked = g.scheduler.pick(rng.choice(worker.models))
                if picked is None:
                    self.counts["none"] += 1
                    return
                g.live.touch_worker(picked)
                self.held.append(picked)
                self.counts["pick"] += 1
        else:
            if worker.reported_ready:
                g.worker_frame(worker, StatusFrame(ready=False, reason="bench: model reloading"))
            else:
                g.worker_frame(worker, StatusFrame(ready=True))
            self.counts["status"] += 1

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not stop.is_set():
            for worker in self.rng.sample(self.workers, self.per_slice):
                self.one(worker)
            for _ in range(self.beats_per_slice):
                worker = self.workers[self._beat_next]
                self._beat_next = (self._beat_next + 1) % len(self.workers)
                cpu, mem = worker.cpu_percent, worker.mem_percent
                self.gateway.worker_frame(worker, HeartbeatFrame(cpu_percent=cpu, mem_percent=mem))
                self.counts["liveness"] += 1
            next_at += 0.1
            await asyncio.sleep(max(0.0, next_at - loop.time()))


async def bench(args: argparse.Namespace) -> bool:
    rng = random.Random(args.seed)
    # The churn heartbeats only 6 % of the fleet per second; a long expiry keeps the sweep from
    # evicting the rest (real workers heartbeat every 5 s, see the note in docs/benchmarks.md).
    config = GatewayConfig.build(workers__heartbeat_expiry="1h", server__open=True)
    gateway = Gateway(config)
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = make_server(gateway, handle_signals=False)
    serving = await serve_started(server, sock)
    assert serving is not None, "the gateway did not start"
    hub = gateway.hub
    flush = Timed(hub.flush)
    hub.flush = flush  # type: ignore[method-assign]
    derived = Timed(hub._before_flush)
    hub._before_flush = derived

    t = time.perf_counter()
    workers = register_fleet(gateway, args.workers, rng)
    print(f"   registered {len(workers)} workers in {time.perf_counter() - t:.2f} s")
    await asyncio.sleep(2 * hub.interval + 0.1)  # let the hub send the registration delta

    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(trust_env=False, timeout=60) as http:
        t = time.perf_counter()
        full_sizes = [len((await http.get(f"{base}/api/state")).content)]
        get_ms = (time.perf_counter() - t) * 1000

        received: list[tuple[float, str, int]] = []  # (time, type, bytes)
        deflate = zlib.compressobj(wbits=-15)
        deflated = [0]
        stop = asyncio.Event()
        churn = Churn(gateway, workers, args.churn, args.seed, args.heartbeat_all)

        async with connect(
            f"ws://127.0.0.1:{port}/api/state/stream", max_size=None, compression=None
        ) as ws:
            first = await ws.recv()
            snapshot_bytes = len(first.encode() if isinstance(first, str) else first)
            churning = asyncio.create_task(churn.run(stop))

            async def reader() -> None:
                async for message in ws:
                    data = message.encode() if isinstance(message, str) else message
                    kind = "delta" if data.startswith(b'{"type":"delta"') else "other"
                    received.append((time.monotonic(), kind, len(data)))
                    deflated[0] += len(deflate.compress(data) + deflate.flush(zlib.Z_SYNC_FLUSH))

            reading = asyncio.create_task(reader())
            await asyncio.sleep(args.warmup)
            flush.ns.clear()
            derived.ns.clear()
            start, start_count, deflated_start = time.monotonic(), len(received), deflated[0]
            churn_before = dict(churn.counts)
            await asyncio.sleep(args.duration)
            end, window = time.monotonic(), received[start_count:]
            deflated_window = deflated[0] - deflated_start
            churn_window = {k: churn.counts[k] - churn_before[k] for k in churn.counts}
            stop.set()
            await churning
            reading.cancel()
        full_sizes.append(len((await http.get(f"{base}/api/state")).content))

    server.should_exit = True
    await serving
    sock.close()

    elapsed = end - start
    deltas = [b for _, kind, b in window if kind == "delta"]
    delta_bps = sum(b for _, _, b in window) / elapsed
    deltas_per_s = len(deltas) / elapsed
    full = sum(full_sizes) / len(full_sizes)
    same_cadence = full * deltas_per_s
    flush_ms = sorted(ns / 1e6 for ns in flush.ns)
    derived_ms = sorted(ns / 1e6 for ns in derived.ns)
    changes = sum(v for k, v in churn_window.items() if k not in ("none", "liveness"))

    print(
        f"   churn: {changes / elapsed:.0f} worker changes/s "
        f"({changes / elapsed / args.workers:.1%} of the fleet): {churn_window}"
    )
    if args.heartbeat_all:
        print(
            f"   plus liveness heartbeats: {churn_window['liveness'] / elapsed:.0f}/s "
            f"(every worker every {args.heartbeat_all:g} s)"
        )
    print(
        f"   full state (GET /api/state): {full / 1e6:.2f} MB, served in {get_ms:.0f} ms; "
        f"stream snapshot {snapshot_bytes / 1e6:.2f} MB"
    )
    print(
        f"   stream over {elapsed:.1f} s: {len(deltas)} deltas ({deltas_per_s:.2f}/s), "
        f"mean {sum(deltas) / max(len(deltas), 1) / 1e3:.1f} KB, "
        f"max {max(deltas, default=0) / 1e3:.1f} KB -> {delta_bps / 1e3:.1f} KB/s "
        f"(~{deflated_window / elapsed / 1e3:.1f} KB/s with permessage-deflate)"
    )
    print(
        f"   full snapshot at the delta cadence: {same_cadence / 1e6:.2f} MB/s; "
        f"one full snapshot per second: {full / 1e6:.2f} MB/s"
    )
    print(
        f"   hub tick (StateHub.flush, diff + encode): mean {sum(flush_ms) / len(flush_ms):.2f} ms,"
        f" p95 {percentile(flush_ms, 95):.2f} ms, max {flush_ms[-1]:.2f} ms over "
        f"{len(flush_ms)} ticks; of which LiveState.refresh_derived mean "
        f"{sum(derived_ms) / len(derived_ms):.2f} ms"
    )
    ratio = delta_bps / same_cadence * 100
    ok = verdict(
        "deltas vs full snapshots at the same cadence", ratio, 10.0, "%", higher_is_better=False
    )
    print(f"   deltas vs one full snapshot per second: {delta_bps / full * 100:.2f} %")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=5000)
    parser.add_argument("--churn", type=float, default=0.10, help="share of workers per second")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--heartbeat-all",
        type=float,
        default=0.0,
        metavar="S",
        help="also heartbeat every worker every S seconds (unchanged cpu/mem; each still "
        "moves last_heartbeat), as a real fleet does; 0 = off",
    )
    parser.add_argument("--quick", action="store_true", help="a few seconds, for CI smoke")
    args = parser.parse_args()
    if args.quick:
        args.workers, args.duration, args.warmup = 500, 2.0, 1.0
    header(f"state_stream: {args.workers} workers, {args.churn:.0%} churn per second")
    logging.getLogger("gatewaytui").setLevel(logging.ERROR)  # the churn's events are not news
    ok = asyncio.run(bench(args))  # the stock loop, as `gatewaytui serve` runs today
    print(f"\noverall: {'PASS' if ok else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
