"""Backend routing overhead: the same upstream called directly and as a gateway backend.

Three processes on loopback: the upstream (bench/_support/upstream.py), `gatewaytui serve`
with one backend pointing at the upstream (`max_concurrency` = the load's concurrency, so the
gateway never queues), and the load generator (wrk if installed, else the httpx loadgen).
Closed loop: requests/s and p50/p95/p99 direct, then through the gateway, with the added p50
and the throughput ratio, at a 20 ms service time and at 0 ms (pure overhead).

Then the hot-path figures of issue 15 (bench/_support/hotpath.py): gateway CPU µs per chat,
per 20-chunk stream, per embeddings request of 16 inputs and per streamed chunk; streams/s
against direct; time to first byte p50/p99; added latency at c=1 — each as a ratio or a
difference against direct within the same run, with PASS/MISS.

Compare with bench/overhead.py, where the gateway reaches the same upstream through a relay
worker over a WebSocket: a backend saves that hop and that process.

    python bench/backend_overhead.py            # about 25 s
    python bench/backend_overhead.py --quick    # a few seconds, for CI smoke
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent / "_support"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    PYTHON,
    SUPPORT,
    Proc,
    free_port,
    gateway_argv,
    header,
    processes,
    verdict,
    wait_http,
)
from hotpath import interleaved, report

from overhead import LoadGen, line, set_service


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--service-ms", type=float, default=20.0)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measured window")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each window")
    parser.add_argument("--loadgen", choices=["auto", "wrk", "httpx"], default="auto")
    parser.add_argument("--hot-duration", type=float, default=3.0, help="hot-path windows (s)")
    parser.add_argument("--rounds", type=int, default=1, help="hot-path rounds (median)")
    parser.add_argument("--skip-svc", action="store_true", help="only the hot-path figures")
    parser.add_argument("--quick", action="store_true", help="tiny windows, for CI smoke")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup, args.hot_duration, args.rounds = 1.0, 1.0, 1.0, 1
    kind = args.loadgen
    if kind == "auto":
        kind = "wrk" if shutil.which("wrk") else "httpx"
    if kind == "wrk":
        args.duration, args.warmup = max(1, round(args.duration)), round(args.warmup)

    header("backend overhead: upstream direct vs through the gateway as a backend")
    print(
        f"   load: closed loop, concurrency {args.concurrency}, generator {kind}, "
        f"{args.duration:g} s windows after {args.warmup:g} s warm-up"
    )
    up_port, gw_port = free_port(), free_port()
    upstream_url = f"http://127.0.0.1:{up_port}"
    gateway_url = f"http://127.0.0.1:{gw_port}"
    chat = "/v1/chat/completions"
    phases = [("svc", args.service_ms), ("zero", 0.0)]
    ok = True
    with processes() as procs, tempfile.TemporaryDirectory(prefix="bench-backend-") as tmp:
        upstream = Proc(
            "upstream",
            [PYTHON, str(SUPPORT / "upstream.py"), "--port", str(up_port), "--service-ms", "0"],
        )
        procs.append(upstream)

        wait_http(f"{upstream_url}/v1/models", 20, proc=upstream)
        store = Path(tmp) / "backends.yaml"
        gateway = Proc(
            "gateway",
            gateway_argv(gw_port, "--backends-store-path", str(store)),
        )
        procs.append(gateway)
        wait_http(f"{gateway_url}/healthz", 20, proc=gateway)
        spec = {"id": "bench", "url": upstream_url, "max_concurrency": args.concurrency}
        httpx.post(f"{gateway_url}/api/backends", json=spec, trust_env=False).raise_for_status()
        wait_http(f"{gateway_url}/readyz", 20, proc=gateway)  # ready once the probe passed
        gen = LoadGen(kind, args.concurrency, Path(tmp))
        for tag, service in [] if args.skip_svc else phases:
            set_service(upstream_url, service)
            print(f"\n-- service time {service:g} ms")
            direct = gen.run(upstream_url + chat, args.duration, args.warmup, [upstream])
            line("direct", direct)
            via = gen.run(gateway_url + chat, args.duration, args.warmup, [upstream, gateway])
            line("via backend", via)
            added = via["p50_ms"] - direct["p50_ms"]
            ratio = via["rps"] / direct["rps"] * 100 if direct["rps"] else 0.0
            if tag == "svc":
                ok &= verdict("added p50 latency", added, 1.0, "ms", higher_is_better=False)
                ok &= verdict("throughput ratio", ratio, 85.0, "%", higher_is_better=True)
            else:
                print(f"   added p50 {added:.2f} ms, throughput ratio {ratio:.1f} % (no target)")
        set_service(upstream_url, 0)
        print("\n-- hot path (service time 0 ms)")
        direct, via = interleaved(
            gen,
            upstream_url,
            gateway_url,
            [upstream],
            [upstream, gateway],
            args.hot_duration,
            0 if args.quick else args.warmup,
            args.rounds,
        )
        hot = report("via backend", direct, via, ["gateway"], 0.3, line)
        ok &= all(hot.values())
        state = httpx.get(f"{gateway_url}/api/backends/bench", trust_env=False).json()
        print(
            f"\n   backend counted {state['requests']} requests, {state['failures']} failures; "
            f"gateway RSS {gateway.rss_mib():.0f} MiB"
        )
        gateway.check()
    print(f"\noverall: {'PASS' if ok else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
