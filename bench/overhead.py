"""Gateway overhead: the same upstream called directly and through the gateway.

Four processes on loopback, each its own OS process:
  upstream  bench/_support/upstream.py: Starlette/uvicorn, a fixed small completion after a
            service time (asyncio.sleep; default 20 ms, then 0 ms = pure overhead)
  gateway   `gatewaytui serve`
  worker    `gatewaytui worker --upstream URL` (relay worker, 64 slots)
  loadgen   wrk if installed (one thread), else bench/_support/loadgen.py (httpx, 64 loops)

Closed loop at concurrency 64, first against the upstream directly, then through the gateway:
requests/s, p50/p95/p99 latency, the added p50 and the throughput ratio, plus the CPU each
process burnt during the window (they all share this machine's cores). Then, for the shipped
stack, the hot-path figures of issue 15 (bench/_support/hotpath.py: gateway and worker CPU per
chat, stream, embeddings request and streamed chunk; streams/s, TTFB and c=1 latency against
direct, each within the same run, with PASS/MISS). Two gateway stacks:
"shipped" (the CLI as released: the relay worker's HTTP client is aiohttp) and "httpx-relay"
(the same with the relay's previous client, httpx over sharded pools, for comparison); one
more with --stacks uvloop (gateway and worker on uvloop).

    python bench/overhead.py            # about 55 s
    python bench/overhead.py --quick    # a few seconds, for CI smoke (shipped stack only)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent / "_support"))
from common import (
    PYTHON,
    SUPPORT,
    Proc,
    free_port,
    gateway_argv,
    header,
    machine_split,
    machine_ticks,
    processes,
    verdict,
    wait_http,
)
from hotpath import interleaved, report

BODY = {
    "model": "bench-model",
    "messages": [{"role": "user", "content": "Say hello."}],
    "max_tokens": 16,
}

WRK_SCRIPT = r"""
wrk.method = "POST"
wrk.body = [[%BODY%]]
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT {\"requests\":%d,\"duration_us\":%d,\"status_errors\":%d,\"socket_errors\":%d," ..
    "\"p50_us\":%d,\"p95_us\":%d,\"p99_us\":%d,\"mean_us\":%f}\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.mean))
end
"""


def parse_result(text: str) -> dict:
    for line in text.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"load generator printed no result:\n{text[-2000:]}")


class LoadGen:
    def __init__(
        self, kind: str, concurrency: int, workdir: Path, body: dict | None = None, tag: str = ""
    ) -> None:
        self.kind = kind
        self.concurrency = concurrency
        self.workdir = workdir
        self.body = BODY if body is None else body
        if kind == "wrk":
            self.script = workdir / f"post{tag}.lua"
            self.script.write_text(WRK_SCRIPT.replace("%BODY%", json.dumps(self.body)))

    def with_body(self, body: dict, tag: str, concurrency: int | None = None) -> LoadGen:
        """The same generator POSTing another body (a stream, embeddings)."""
        conc = self.concurrency if concurrency is None else concurrency
        return LoadGen(self.kind, conc, self.workdir, body, tag)

    def run(self, url: str, duration: float, warmup: float, watch: list[Proc]) -> dict:
        """One measured window; returns figures plus the CPU seconds of every process."""
        if self.kind == "wrk":
            return self._run_wrk(url, duration, warmup, watch)
        return self._run_httpx(url, duration, warmup, watch)

    def _wrk_argv(self, url: str, seconds: float) -> list[str]:
        return [
            "wrk",
            "-t1",
            f"-c{self.concurrency}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "30s",
            "-s",
            str(self.script),
            url,
        ]

    def _run_wrk(self, url: str, duration: float, warmup: float, watch: list[Proc]) -> dict:
        if warmup > 0:
            subprocess.run(
                self._wrk_argv(url, warmup), capture_output=True, check=True, timeout=warmup + 30
            )
        out = self.workdir / "wrk.out"
        before = {p.name: p.cpu_seconds() for p in watch}
        machine0 = machine_ticks()
        t0 = time.perf_counter()
        with open(out, "wb") as f:
            child = subprocess.Popen(
                self._wrk_argv(url, duration), stdout=f, stderr=subprocess.STDOUT
            )
            _, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        after = {p.name: p.cpu_seconds() for p in watch}
        machine = machine_split(machine0, machine_ticks())
        raw = parse_result(out.read_text())
        elapsed = raw["duration_us"] / 1e6
        errors = raw["status_errors"] + raw["socket_errors"]
        ok = raw["requests"] - raw["status_errors"]
        cpu = {name: after[name] - before[name] for name in before}
        cpu["loadgen(wrk)"] = usage.ru_utime + usage.ru_stime
        return {
            "rps": ok / elapsed,
            "requests": raw["requests"],
            "errors": errors,
            "p50_ms": raw["p50_us"] / 1000,
            "p95_ms": raw["p95_us"] / 1000,
            "p99_ms": raw["p99_us"] / 1000,
            "elapsed_s": elapsed,
            "wall_s": wall,
            "cpu": cpu,
            "machine": machine,
        }

    def _run_httpx(self, url: str, duration: float, warmup: float, watch: list[Proc]) -> dict:
        argv = [
            PYTHON,
            str(SUPPORT / "loadgen.py"),
            "--url",
            url,
            "-c",
            str(self.concurrency),
            "-d",
            str(duration),
            "--warmup",
            str(warmup),
            "--body",
            json.dumps(self.body),
        ]
        out = self.workdir / "loadgen.out"
        with open(out, "wb") as f:
            child = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + warmup + 30
            while b"MEASURING" not in out.read_bytes():
                if child.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"load generator failed:\n{out.read_text()[-2000:]}")
                time.sleep(0.005)
            before = {p.name: p.cpu_seconds() for p in watch}
            machine0 = machine_ticks()
            t0 = time.perf_counter()
            child.wait(duration + 60)
            wall = time.perf_counter() - t0
            after = {p.name: p.cpu_seconds() for p in watch}
            machine = machine_split(machine0, machine_ticks())
        raw = parse_result(out.read_text())
        cpu = {name: after[name] - before[name] for name in before}
        cpu["loadgen(httpx)"] = raw["loadgen_cpu_s"]
        return {
            "rps": raw["rps"],
            "requests": raw["requests"],
            "errors": sum(raw["errors"].values()),
            "p50_ms": raw["p50_ms"],
            "p95_ms": raw["p95_ms"],
            "p99_ms": raw["p99_ms"],
            "elapsed_s": raw["elapsed_s"],
            "wall_s": wall,
            "cpu": cpu,
            "machine": machine,
        }


def line(label: str, r: dict) -> None:
    err = f", {r['errors']} errors" if r["errors"] else ""
    print(
        f"   {label:<20} {r['rps']:7.0f} req/s  p50 {r['p50_ms']:7.2f} ms  "
        f"p95 {r['p95_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  ({r['requests']} req{err})"
    )
    n = max(r["requests"], 1)
    parts = [
        f"{k} {v / r['wall_s']:.2f} ({v / n * 1e6:.0f} us/req)"
        for k, v in r["cpu"].items()
        if v > 0.005 * r["wall_s"]
    ]
    total = sum(r["cpu"].values()) / r["wall_s"]
    m, cpus = r["machine"], os.cpu_count() or 1
    # what the machine spent that none of our processes did: other people's work
    others = max(0.0, (m["busy"] - m["softirq"] - m["steal"]) * cpus - total)
    print(
        f"   {'':<20} CPU: {', '.join(parts)}; total {total:.2f} of {cpus} cores; "
        f"machine {m['busy']:.0%} busy (softirq {m['softirq']:.0%}, steal {m['steal']:.0%}, "
        f"other processes ~{others:.2f} cores)"
    )


def set_service(upstream_url: str, ms: float) -> None:
    url = f"{upstream_url}/_bench/service_ms"
    httpx.put(url, params={"ms": ms}, trust_env=False).raise_for_status()


STACKS = {
    # what ships: `gatewaytui serve` and `gatewaytui worker --upstream` as they are
    "shipped": {"gateway": "cli", "relay": "cli"},
    # the shipped gateway behind the relay's previous HTTP client (httpx over sharded pools)
    "httpx-relay": {"gateway": "cli", "relay": ["--client", "httpx"]},
    # not in the default run: gateway and worker on uvloop (uvicorn[standard] brings it)
    "uvloop": {"gateway": "uvloop", "relay": ["--uvloop"]},
}


def start_stack(
    name: str, procs: list[Proc], gw_port: int, upstream_url: str, args: argparse.Namespace
) -> tuple[Proc, Proc]:
    spec = STACKS[name]
    gateway_url = f"http://127.0.0.1:{gw_port}"
    if spec["gateway"] == "cli":
        gateway = Proc(f"gateway-{name}", gateway_argv(gw_port))
    else:
        gateway = Proc(
            f"gateway-{name}",
            [
                PYTHON,
                str(SUPPORT / "gateway_uvloop.py"),
                "--server-host",
                "127.0.0.1",
                "--server-port",
                str(gw_port),
                "--server-open",
                "true",
            ],
        )
    procs.append(gateway)
    wait_http(f"{gateway_url}/healthz", 20, proc=gateway)
    if spec["relay"] == "cli":
        argv = [
            PYTHON,
            "-m",
            "gatewaytui.cli.main",
            "--log-level",
            "warning",
            "worker",
            "--gateway",
            f"ws://127.0.0.1:{gw_port}",
            "--upstream",
            upstream_url,
            "--id",
            "bench-relay",
        ]
    else:
        argv = [
            PYTHON,
            str(SUPPORT / "relay.py"),
            "--gateway",
            f"ws://127.0.0.1:{gw_port}",
            "--upstream",
            upstream_url,
            *spec["relay"],
        ]
    argv += ["--count", str(args.workers), "--concurrency", str(args.worker_concurrency)]
    worker = Proc(f"worker-{name}", argv)
    procs.append(worker)
    wait_http(f"{gateway_url}/readyz", 20, proc=worker)
    gateway.name, worker.name = "gateway", "worker"
    return gateway, worker


def parse_args() -> tuple[argparse.Namespace, list[str], str]:
    """The options, the stacks to measure and the load generator (adjusted for --quick)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--service-ms", type=float, default=20.0)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measured window")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each window")
    parser.add_argument(
        "--serial-duration",
        type=float,
        default=3.0,
        help="seconds per window at concurrency 1 (all but the shipped stack); 0: skip",
    )
    parser.add_argument(
        "--stacks",
        default="shipped,httpx-relay",
        help="comma list of: shipped (as released), httpx-relay (the relay's previous HTTP "
        "client), uvloop (gateway and worker on uvloop)",
    )
    parser.add_argument("--loadgen", choices=["auto", "wrk", "httpx"], default="auto")
    parser.add_argument("--workers", type=int, default=1, help="relay workers (one process)")
    parser.add_argument("--worker-concurrency", type=int, default=64, help="slots per worker")
    parser.add_argument("--hot-duration", type=float, default=3.0, help="hot-path windows (s)")
    parser.add_argument("--rounds", type=int, default=1, help="hot-path rounds (median)")
    parser.add_argument("--skip-svc", action="store_true", help="only the hot-path figures")
    parser.add_argument("--quick", action="store_true", help="tiny windows, for CI smoke")
    args = parser.parse_args()
    stacks = [s.strip() for s in args.stacks.split(",") if s.strip()]
    for s in stacks:
        if s not in STACKS:
            parser.error(f"unknown stack {s!r}")
    if args.quick:
        args.duration, args.warmup, args.serial_duration = 1.0, 1.0, 0
        args.hot_duration, args.rounds = 1.0, 1
        stacks = stacks[:1]
    kind = args.loadgen
    if kind == "auto":
        kind = "wrk" if shutil.which("wrk") else "httpx"
    if kind == "wrk":  # wrk takes whole seconds
        args.duration = max(1, round(args.duration))
        args.serial_duration = round(args.serial_duration)
        args.warmup = round(args.warmup)
    return args, stacks, kind


CHAT = "/v1/chat/completions"


def measure_phases(
    gen: LoadGen,
    url: str,
    phases: list[tuple[str, float, int]],
    upstream_url: str,
    watch: list[Proc],
    args: argparse.Namespace,
) -> dict[str, dict]:
    """One window per (tag, service ms, concurrency) phase against `url`; results by tag."""
    results: dict[str, dict] = {}
    for tag, service, conc in [] if args.skip_svc else phases:
        set_service(upstream_url, service)
        gen.concurrency = conc
        duration = args.duration if conc > 1 else args.serial_duration
        results[tag] = gen.run(url + CHAT, duration, args.warmup, watch)
        line(f"svc {service:g} ms, c={conc}", results[tag])
    return results


def judge_stack(stack: str, direct: dict[str, dict], via: dict[str, dict]) -> bool | None:
    """The added latency and throughput ratio per phase; the verdict of the `svc` phase."""
    verdict_svc: bool | None = None
    for tag, r in via.items():
        d = direct[tag]
        added = r["p50_ms"] - d["p50_ms"]
        ratio = r["rps"] / d["rps"] * 100 if d["rps"] else 0.0
        if tag == "svc":
            ok = verdict(f"[{stack}] added p50 latency", added, 1.0, "ms", higher_is_better=False)
            ok &= verdict(f"[{stack}] throughput ratio", ratio, 85.0, "%", higher_is_better=True)
            verdict_svc = ok
        else:
            print(
                f"   [{stack}] added p50 {added:.2f} ms, throughput ratio {ratio:.1f} % "
                "(secondary, no target)"
            )
    return verdict_svc


def main() -> int:
    args, stacks, kind = parse_args()
    header("overhead: upstream direct vs through gateway + relay worker")
    print(
        f"   load: closed loop, concurrency {args.concurrency}, generator {kind}, "
        f"{args.duration:g} s windows after {args.warmup:g} s warm-up; relay: "
        f"{args.workers} worker(s) x {args.worker_concurrency} slots"
    )
    print("   CPU columns: cores busy during the window and CPU microseconds per request")
    up_port = free_port()
    upstream_url = f"http://127.0.0.1:{up_port}"
    phases = [("svc", args.service_ms, args.concurrency), ("zero", 0.0, args.concurrency)]
    verdicts: dict[str, bool] = {}
    with processes() as procs, tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        upstream = Proc(
            "upstream",
            [
                PYTHON,
                str(SUPPORT / "upstream.py"),
                "--port",
                str(up_port),
                "--service-ms",
                str(args.service_ms),
            ],
        )
        procs.append(upstream)
        wait_http(f"{upstream_url}/v1/models", 20, proc=upstream)
        gen = LoadGen(kind, args.concurrency, Path(tmp))

        print("\n-- direct (load generator -> upstream)")
        direct_phases = phases + [("serial", 0.0, 1)] * (args.serial_duration > 0)
        direct = measure_phases(gen, upstream_url, direct_phases, upstream_url, [upstream], args)

        for stack in stacks:
            gw_port = free_port()
            gateway_url = f"http://127.0.0.1:{gw_port}"
            gateway, worker = start_stack(stack, procs, gw_port, upstream_url, args)
            watch = [upstream, gateway, worker]
            print(
                f"\n-- via gateway, {stack} stack (load generator -> gateway -> relay worker "
                "-> upstream)"
            )
            serial = stack != "shipped" and args.serial_duration > 0
            stack_phases = phases + [("serial", 0.0, 1)] * serial
            via = measure_phases(gen, gateway_url, stack_phases, upstream_url, watch, args)
            if (ok := judge_stack(stack, direct, via)) is not None:
                verdicts[stack] = ok
            if stack == "shipped":
                set_service(upstream_url, 0)
                print("\n-- hot path (service time 0 ms)")
                hot_direct, hot_via = interleaved(
                    gen,
                    upstream_url,
                    gateway_url,
                    [upstream],
                    watch,
                    args.hot_duration,
                    0 if args.quick else args.warmup,
                    args.rounds,
                )
                hot = report("via relay", hot_direct, hot_via, ["gateway", "worker"], 0.6, line)
                verdicts["hot path"] = all(hot.values())
            for proc in watch:
                proc.check()
            print(
                f"   RSS after: gateway {gateway.rss_mib():.0f} MiB, "
                f"worker {worker.rss_mib():.0f} MiB"
            )
            worker.stop()
            gateway.stop()
    print()
    for stack, ok in verdicts.items():
        print(f"overall [{stack}]: {'PASS' if ok else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
