"""Slow-connection flood (issue 11, item 8): 1,200 idle and dribbling connections against a
real gateway process whose file-descriptor limit is a common default (1,024).

The campaign that filed the issue left 1,200 such connections open: near the descriptor
limit `/healthz` timed out and the log grew by 18-26 MB of EMFILE tracebacks in 7 s. Here:

- half the connections send nothing (idle), half send a request line and then one header
  byte every 0.5 s, never finishing (dribbling: a slowloris);
- while they are open, `/healthz` is asked every 0.2 s on a fresh connection (from its own
  thread): every answer must be 200 within the bound (the connection cap makes room by
  closing the connection that has waited longest for headers, so the flood evicts itself);
- every flood connection must be closed by the gateway within `server.header_timeout`
  (+ slack), dribbling ones included;
- the gateway's log (at `info`) may grow by a few KiB, not megabytes: the lines are
  rate-limited, and nothing is a traceback.

    python bench/flood.py            # header timeout 10 s (the default), ~20 s
    python bench/flood.py --quick    # header timeout 2 s, ~10 s
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent / "_support"))
from common import Proc, free_port, gateway_argv, header, percentile, processes, verdict, wait_http

DRIBBLE_EVERY_S = 0.5
PROBE_EVERY_S = 0.2
HEALTHZ_BOUND_S = 2.0  # every /healthz during the flood answers 200 within this
CLOSE_SLACK_S = 1.5  # a flood connection lives at most header_timeout + this
LOG_BOUND_BYTES = 64 * 1024  # the log may grow this much during the flood (was 18-26 MB)


@dataclass
class Flood:
    """What happened to the flood's connections."""

    opened: int = 0
    failed_to_open: int = 0
    lifetimes: list[float] = field(default_factory=list)  # connect attempt -> closed
    still_open: int = 0


def raise_own_nofile(needed: int) -> int:
    """The bench holds `needed` sockets: raise its soft limit (within the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def one_connection(port: int, dribble: bool, flood: Flood, stop: asyncio.Event) -> None:
    """Open, idle or dribble, and note when the gateway closes it (timed from the connect
    attempt: an upper bound of the time the gateway kept it)."""
    started = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        flood.failed_to_open += 1
        return
    flood.opened += 1

    async def dribbler() -> None:
        with contextlib.suppress(OSError, ConnectionError):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            while True:
                await asyncio.sleep(DRIBBLE_EVERY_S)
                writer.write(b"a")
                await writer.drain()

    async def until_closed() -> None:
        with contextlib.suppress(OSError, ConnectionError):  # a reset (abort) is a close too
            await reader.read(1)

    task = asyncio.create_task(dribbler()) if dribble else None
    closed, stopped = asyncio.create_task(until_closed()), asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({closed, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if closed in done:
        flood.lifetimes.append(time.monotonic() - started)
    else:
        flood.still_open += 1
    for pending in (closed, stopped, task):
        if pending is not None:
            pending.cancel()
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()


def probe_healthz(
    url: str, stop: threading.Event, latencies: list[float], failures: list[str]
) -> None:
    """/healthz on a fresh connection every PROBE_EVERY_S while the flood is open (in its
    own thread: the flood's event loop must not delay the probe's own reads)."""
    while not stop.is_set():
        started = time.monotonic()
        try:
            answer = httpx.get(url + "/healthz", timeout=5.0, trust_env=False)
            if answer.status_code != 200:
                failures.append(f"HTTP {answer.status_code}")
            latencies.append(time.monotonic() - started)
        except httpx.HTTPError as exc:
            failures.append(f"{type(exc).__name__}: {exc}"[:120])
        stop.wait(PROBE_EVERY_S)


async def run_flood(port: int, n: int, window: float) -> tuple[Flood, list[float], list[str]]:
    flood, latencies, failures = Flood(), [], []
    stop = asyncio.Event()
    url = f"http://127.0.0.1:{port}"
    conns = [asyncio.create_task(one_connection(port, i % 2 == 1, flood, stop)) for i in range(n)]
    probe_stop = threading.Event()
    probe = threading.Thread(target=probe_healthz, args=(url, probe_stop, latencies, failures))
    probe.start()
    await asyncio.sleep(window)
    stop.set()
    probe_stop.set()
    await asyncio.gather(*conns)
    await asyncio.to_thread(probe.join)
    return flood, latencies, failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 s header timeout, ~10 s")
    parser.add_argument("--connections", type=int, default=1200)
    parser.add_argument("--gateway-nofile", type=int, default=1024, help="the gateway's fd limit")
    args = parser.parse_args()
    header_timeout = 2.0 if args.quick else 10.0
    window = header_timeout + CLOSE_SLACK_S + 1.0  # every flood connection is gone by then
    header(
        f"flood: {args.connections} idle + dribbling connections, "
        f"header timeout {header_timeout:g}s"
    )
    own = raise_own_nofile(args.connections)
    print(f"   bench soft RLIMIT_NOFILE {own}; gateway's limit {args.gateway_nofile}")
    port = free_port()
    argv = gateway_argv(port, "--server-header-timeout", f"{header_timeout:g}s", log_level="info")
    shell = ["sh", "-c", f'ulimit -n {args.gateway_nofile} && exec "$@"', "gateway", *argv]
    with processes() as started:
        gateway = Proc("flood-gateway", shell)
        started.append(gateway)
        wait_http(f"http://127.0.0.1:{port}/healthz", 30, proc=gateway)
        log_before = gateway.log_path.stat().st_size
        flood, latencies, failures = asyncio.run(run_flood(port, args.connections, window))
        time.sleep(0.2)  # the last log lines of the flood are written
        log_text = gateway.log_path.read_bytes()[log_before:].decode(errors="replace")
        gateway.check()
        after = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5, trust_env=False)
        rss = gateway.rss_mib()
    return report(
        args, header_timeout, flood, latencies, failures, log_text, after.status_code, rss
    )


def report(
    args: argparse.Namespace,
    header_timeout: float,
    flood: Flood,
    latencies: list[float],
    failures: list[str],
    log_text: str,
    after_status: int,
    rss: float,
) -> int:
    lifetimes = sorted(flood.lifetimes)
    latencies.sort()
    log_bytes = len(log_text.encode())
    print(
        f"   flood: {flood.opened} opened ({flood.failed_to_open} failed to open), "
        f"{len(lifetimes)} closed by the gateway, {flood.still_open} still open at the end"
    )
    if lifetimes:
        early = sum(1 for t in lifetimes if t < header_timeout * 0.9)
        print(
            f"   lifetimes: p50 {percentile(lifetimes, 50):.2f}s, max {lifetimes[-1]:.2f}s "
            f"from the connect attempt; {early} closed before the header timeout (made room "
            "under the connection cap), the rest by it"
        )
    print(
        f"   /healthz during the flood: {len(latencies)} answered, {len(failures)} failed; "
        f"p50 {percentile(latencies, 50) * 1000:.1f} ms, "
        f"max {max(latencies, default=0) * 1000:.1f} ms"
        + (f"; first failure: {failures[0]}" if failures else "")
    )
    print(
        f"   gateway log during the flood: {log_bytes} bytes, {log_text.count(chr(10))} lines, "
        f"{log_text.count('Traceback')} tracebacks; RSS after {rss:.0f} MiB; "
        f"/healthz after: {after_status}"
    )
    checks = [
        verdict("/healthz failures during the flood", len(failures), 0, "", higher_is_better=False),
        verdict(
            "/healthz slowest answer",
            max(latencies, default=float("inf")),
            HEALTHZ_BOUND_S,
            "s",
            higher_is_better=False,
        ),
        verdict("flood connections left open", flood.still_open, 0, "", higher_is_better=False),
        verdict(
            "longest flood connection",
            lifetimes[-1] if lifetimes else float("inf"),
            header_timeout + CLOSE_SLACK_S,
            "s",
            higher_is_better=False,
        ),
        verdict("log growth", log_bytes, LOG_BOUND_BYTES, "bytes", higher_is_better=False),
        verdict(
            "tracebacks in the log", log_text.count("Traceback"), 0, "", higher_is_better=False
        ),
    ]
    ok = all(checks) and after_status == 200 and flood.opened >= args.connections * 0.95
    print(f"\noverall: {'PASS' if ok else 'MISS'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
