"""Gateway CPU for an idle fleet: 2,000 simulated workers heartbeating every 5 s.

Two processes on loopback: the gateway (`gatewaytui serve --workers-heartbeat-interval 5s`)
and ONE worker process running all simulated workers (`gatewaytui worker --simulate --count
2000`, i.e. run_workers with SimulateSettings). Once every worker has registered (polled on
/metrics) and a settle period has passed, nothing else talks to the gateway while its CPU
(utime+stime from /proc/PID/stat) is measured over a 30 s window.

Reports: registration time for the fleet, gateway CPU as % of one core (target <= 25 %), CPU
per heartbeat, the fleet process's CPU, and the gateway's RSS.

    python bench/heartbeats.py           # ~50 s
    python bench/heartbeats.py --quick
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent / "_support"))
from common import PYTHON, Proc, free_port, gateway_argv, header, processes, verdict, wait_http

_WORKERS = re.compile(r'^gatewaytui_workers\{status="([a-z_]+)"\} ([0-9.e+]+)$', re.M)


def workers_by_status(base: str) -> dict[str, int]:
    text = httpx.get(f"{base}/metrics", timeout=10, trust_env=False).text
    return {status: int(float(n)) for status, n in _WORKERS.findall(text)}


def live(counts: dict[str, int]) -> int:
    return sum(n for status, n in counts.items() if status != "gone")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2000)
    parser.add_argument("--interval", default="5s", help="gateway heartbeat interval")
    parser.add_argument("--window", type=float, default=30.0, help="CPU window, seconds")
    parser.add_argument("--settle", type=float, default=5.0, help="wait after registration")
    parser.add_argument("--register-timeout", type=float, default=120.0)
    parser.add_argument("--target", type=float, default=25.0, help="%% of one core")
    parser.add_argument("--quick", action="store_true", help="a few seconds, for CI smoke")
    args = parser.parse_args()
    if args.quick:
        args.workers, args.window, args.settle = 200, 3.0, 1.0
    interval_s = float(args.interval.rstrip("s"))

    header(f"heartbeats: {args.workers} simulated workers, heartbeat every {args.interval}")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ok = True
    with processes() as procs:
        gateway = Proc("gateway", gateway_argv(port, "--workers-heartbeat-interval", args.interval))
        procs.append(gateway)
        wait_http(f"{base}/healthz", 20, proc=gateway)
        rss_empty = gateway.rss_mib()
        gw_cpu0 = gateway.cpu_seconds()
        t_launch = time.monotonic()
        fleet = Proc(
            "fleet",
            [
                PYTHON, "-m", "gatewaytui.cli.main", "--log-level", "warning", "worker",
                "--simulate", "--count", str(args.workers), "--id", "hb",
                "--gateway", f"ws://127.0.0.1:{port}",
            ],
        )  # fmt: skip
        procs.append(fleet)
        first = None
        deadline = t_launch + args.register_timeout
        registered = 0
        while time.monotonic() < deadline:
            fleet.check()
            registered = live(workers_by_status(base))
            now = time.monotonic()
            if registered and first is None:
                first = now
            if registered >= args.workers:
                break
            time.sleep(0.2)
        t_all = time.monotonic()
        if registered < args.workers:
            raise SystemExit(f"only {registered}/{args.workers} registered in time")
        reg_cpu = gateway.cpu_seconds() - gw_cpu0
        print(
            f"   registration: all {args.workers} in {t_all - t_launch:.1f} s from starting the "
            f"worker process ({t_all - (first or t_launch):.1f} s from the first one); "
            f"gateway CPU {reg_cpu:.1f} s while they registered"
        )
        time.sleep(args.settle)
        gw0, fl0, t0 = gateway.cpu_seconds(), fleet.cpu_seconds(), time.monotonic()
        time.sleep(args.window)
        gw1, fl1, t1 = gateway.cpu_seconds(), fleet.cpu_seconds(), time.monotonic()
        wall = t1 - t0
        after = workers_by_status(base)
        gw_pct = (gw1 - gw0) / wall * 100
        beats = args.workers / interval_s * wall
        print(
            f"   window {wall:.1f} s: gateway {gw1 - gw0:.2f} CPU s, worker process "
            f"{fl1 - fl0:.2f} CPU s ({(fl1 - fl0) / wall * 100:.1f} % of a core)"
        )
        print(
            f"   ~{beats / wall:.0f} heartbeats/s expected -> {(gw1 - gw0) / beats * 1e6:.0f} us "
            "of gateway CPU per heartbeat (all background work included)"
        )
        print(f"   after the window: workers by status {after}")
        print(
            f"   gateway RSS: {rss_empty:.0f} MiB empty, {gateway.rss_mib():.0f} MiB with "
            f"{args.workers} workers; worker process RSS {fleet.rss_mib():.0f} MiB"
        )
        if live(after) < args.workers:
            print(f"   MISS: {args.workers - live(after)} workers dropped during the window")
            ok = False
        ok &= verdict("gateway CPU", gw_pct, args.target, "% of one core", higher_is_better=False)
    print(f"\noverall: {'PASS' if ok else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
