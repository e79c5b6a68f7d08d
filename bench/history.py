"""The usage ledger (issue 14): hot-path cost, ingest, query speed and size at millions of rows.

1. Gateway CPU per chat request with the ledger on against off, in the same run: two
   `gatewaytui serve` processes (one with `--history-enabled false`), each with its own
   simulated worker process (no latency), driven alternately (off, on, on, off, ...) in rounds
   of a fixed number of requests by the same closed-loop client; process CPU (utime + stime,
   all threads) from /proc, read a second after a round's last answer so the writer's last
   batch is counted, minus each gateway's idle CPU. Reported: the total ratio and the
   ratio of each on/off round pair (median, min, max): on a shared machine the spread says
   how far to trust it. Target: on <= off x 1.05.
2. Sustained ingest: records offered to a running `Ledger` at 5,000/s for a few seconds on an
   asyncio loop whose worst lag (a 1 ms ticker's overshoot) is reported; then its capacity
   (as many as it takes, as fast as they come). Target: >= 5,000 records/s, none dropped.
3. A 24-hour usage query (group by model, p50/p95 from the rollups) over 10,000,000 stored
   records spread over 7 days (generated through the ledger's own batch writer into a temp
   file). Target: <= 100 ms.
4. An ended-jobs search (newest first, a filter, a text search) over 1,000,000 records.
   Target: <= 100 ms each.
5. Database bytes per million records.

    python bench/history.py            # several minutes (generates 10 M records)
    python bench/history.py --quick    # under a minute, fewer records (CI smoke)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent / "_support"))
from common import (
    PYTHON,
    Proc,
    cpu_seconds,
    free_port,
    gateway_argv,
    header,
    processes,
    verdict,
    wait_http,
)

from gatewaytui.gateway.history import store
from gatewaytui.gateway.history.ledger import Ledger, LedgerSettings
from gatewaytui.gateway.history.record import COLUMNS

MODELS = ["llama3:8b", "llama3:70b", "qwen2.5:32b", "mistral:7b", "nomic-embed-text", "phi3"]
KEYS = ["team-search", "team-chat", "batch-jobs", "ci", "key-1a2b3c4d", "eval", "docs", "ops"]
OUTCOMES = ["ok"] * 97 + ["upstream_error", "queue_timeout", "client_gone"]


# ---- 1. CPU per request, ledger on vs off ---------------------------------------------------


def cpu_on_off(rounds: int, requests: int, concurrency: int) -> bool:
    ok = True
    with processes() as procs, tempfile.TemporaryDirectory() as scratch:
        stacks: dict[str, tuple[Proc, str]] = {}
        for name, extra in (
            ("on", ("--history-enabled", "true", "--history-path", f"{scratch}/h.sqlite3")),
            ("off", ("--history-enabled", "false")),
            ("off2", ("--history-enabled", "false")),  # A/A control: the noise floor
        ):
            port = free_port()
            gw = Proc(f"gateway-{name}", gateway_argv(port, *extra))
            procs.append(gw)
            wait_http(f"http://127.0.0.1:{port}/healthz", 60, proc=gw)
            procs.append(
                Proc(
                    f"worker-{name}",
                    [
                        PYTHON,
                        "-m",
                        "gatewaytui.cli.main",
                        "--log-level",
                        "warning",
                        "worker",
                        "--simulate",
                        "--latency",
                        "0",
                        "--tokens-per-second",
                        "0",
                        "--max-tokens",
                        "8",
                        "--models",
                        "bench",
                        "--concurrency",
                        "128",
                        "--gateway",
                        f"ws://127.0.0.1:{port}",
                    ],
                )
            )
            wait_http(f"http://127.0.0.1:{port}/readyz", 60, proc=gw)
            stacks[name] = (gw, f"http://127.0.0.1:{port}")
        asyncio.run(_drive(stacks, 1, min(requests, 200), concurrency, 0.0))  # warm up
        idle = _idle_cpu(stacks, 2.0)
        rounds_cpu = asyncio.run(_drive(stacks, rounds, requests, concurrency, SETTLE_S))
        ok &= _report(rounds_cpu, idle)
    return ok


def _report(rounds_cpu: dict[str, list[tuple[float, float, int]]], idle: dict[str, float]) -> bool:
    """Totals per gateway, per-round ratios against `off` (the ledger on, and the A/A
    control: a second gateway with the ledger off), and where the difference goes."""
    per: dict[str, float] = {}
    main: dict[str, float] = {}
    for name, rounds in rounds_cpu.items():
        cpu = sum(c - idle[name] * SETTLE_S for c, _, _ in rounds)
        n = sum(k for _, _, k in rounds)
        per[name] = cpu / max(n, 1) * 1e6
        main[name] = sum(m for _, m, _ in rounds) / max(n, 1) * 1e6
        print(
            f"   ledger {name:>4}: {n} requests in {len(rounds)} rounds, gateway {cpu:.2f} CPU s "
            f"(idle {idle[name] * 1000:.0f} ms/s subtracted), {per[name]:.0f} us/request "
            f"(event-loop thread {main[name]:.0f})"
        )

    def pairs(name: str) -> list[float]:
        return [
            (a - idle[name] * SETTLE_S) / an / ((b - idle["off"] * SETTLE_S) / bn)
            for (a, _, an), (b, _, bn) in zip(rounds_cpu[name], rounds_cpu["off"], strict=True)
        ]

    for name, label in (("on", "ledger on / off"), ("off2", "A/A control, off2 / off")):
        ratios = pairs(name)
        print(
            f"   per round, {label}: median {statistics.median(ratios):.3f} x "
            f"(min {min(ratios):.3f}, max {max(ratios):.3f}; "
            + ", ".join(f"{r:.2f}" for r in ratios)
            + f"); total {per[name] / per['off']:.3f} x"
        )
    n_on = sum(k for _, _, k in rounds_cpu["on"])
    writer_us = WRITER_CPU["on"] / max(n_on, 1) * 1e6
    print(
        f"   the ledger's writer thread: {writer_us:.1f} us/request "
        f"({writer_us / per['off'] * 100:.1f} % of the off gateway's CPU per request); "
        f"event-loop thread on - off: {main['on'] - main['off']:+.0f} us/request "
        f"(A/A: {main['off2'] - main['off']:+.0f})"
    )
    ratio = per["on"] / per["off"]
    return verdict(
        "gateway CPU per request, ledger on / off", ratio, 1.05, "x", higher_is_better=False
    )


SETTLE_S = 1.0  # after a round: the writer's last batch (flush_interval 0.5 s) is counted
WRITER_CPU: dict[str, float] = {"on": 0.0, "off": 0.0, "off2": 0.0}


async def _writer_cpu(client: httpx.AsyncClient, url: str) -> float:
    """The ledger writer thread's own CPU seconds so far (0 with the ledger off)."""
    reply = await client.get(url + "/api/history/jobs", params={"limit": 1})
    if reply.status_code != 200:
        return 0.0
    return float(reply.json().get("ledger", {}).get("writer_cpu_s") or 0.0)


def _idle_cpu(stacks: dict, seconds: float) -> dict[str, float]:
    """CPU seconds per second each gateway spends idle (loops, heartbeats)."""
    before = {name: gw.cpu_seconds() for name, (gw, _) in stacks.items()}
    time.sleep(seconds)
    return {name: (gw.cpu_seconds() - before[name]) / seconds for name, (gw, _) in stacks.items()}


async def _drive(
    stacks: dict, rounds: int, requests: int, concurrency: int, settle: float
) -> dict[str, list[tuple[float, float, int]]]:
    """The gateways in turn (the order rotating each round), `requests` chats a round each;
    a round's CPU is read `settle` seconds after its last answer. Per gateway and round:
    (process CPU s, event-loop thread CPU s, requests)."""
    body = {"model": "bench", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    out: dict[str, list[tuple[float, float, int]]] = {name: [] for name in stacks}
    async with httpx.AsyncClient(limits=limits, timeout=30, trust_env=False) as client:
        for r in range(rounds):
            names = list(stacks)
            order = names[r % len(names) :] + names[: r % len(names)]
            if r // len(names) % 2:
                order.reverse()
            for name in order:
                gw, url = stacks[name]
                left = [requests]

                async def loop(url: str = url, left: list[int] = left) -> None:
                    while left[0] > 0:
                        left[0] -= 1
                        try:  # a kept-alive connection the server closed meanwhile: again
                            reply = await client.post(url + "/v1/chat/completions", json=body)
                        except httpx.TransportError:
                            left[0] += 1
                            continue
                        reply.raise_for_status()

                writer0 = await _writer_cpu(client, url)
                cpu0, main0 = gw.cpu_seconds(), cpu_seconds(gw.pid, gw.pid)
                await asyncio.gather(*(loop() for _ in range(concurrency)))
                await asyncio.sleep(settle)
                cpu, loop_cpu = gw.cpu_seconds() - cpu0, cpu_seconds(gw.pid, gw.pid) - main0
                out[name].append((cpu, loop_cpu, requests))
                WRITER_CPU[name] += await _writer_cpu(client, url) - writer0
    return out


def hot_path_cost() -> None:
    """In-process: what one finished request costs the event loop (build the record, put it
    on the queue) and the writer thread (full batches of 1,000 and small ones of 10)."""
    from gatewaytui.gateway.history.record import job_record
    from gatewaytui.gateway.jobs import Job

    now = time.time()
    rng = random.Random(5)
    rows = [_record(i, now - 5000 + i * 0.1, rng) for i in range(25_000)]
    with tempfile.TemporaryDirectory() as scratch:
        conn = store.open_writer(f"{scratch}/h.sqlite3")
        for size, part in ((1000, rows[:20_000]), (10, rows[20_000:])):
            c0 = time.process_time()
            for batch in store.iter_batches(part, size):
                store.write_batch(conn, batch)
            per = (time.process_time() - c0) / len(part) * 1e6
            print(f"   writer thread, batches of {size}: {per:.1f} us CPU per record")
        conn.close()
        job = Job(id="chat-000001-abcdef", kind="chat", model="m", client="127.0.0.1:5")
        ledger = Ledger(LedgerSettings(path=f"{scratch}/q.sqlite3", queue_size=200_000))
        c0 = time.process_time()
        for _ in range(100_000):
            record = job_record(
                job, ok=True, exc=None, key="k", replica=None, ended_at=now,
                duration_ms=12.0, embeddings=0,
            )  # fmt: skip
            ledger.add(record)
        per = (time.process_time() - c0) / 100_000 * 1e6
        print(f"   event loop, build the record and queue it: {per:.2f} us CPU per request")


# ---- 2. ingest ------------------------------------------------------------------------------


def _record(i: int, ended: float, rng: random.Random) -> tuple:
    model = MODELS[i % len(MODELS)]
    dur = rng.lognormvariate(6.0, 0.8)  # ~400 ms median
    outcome = OUTCOMES[rng.randrange(len(OUTCOMES))]
    worker = f"gpu-{(i % len(MODELS)) * 2 + (i // 7) % 2:02d}"
    key = KEYS[(i * 7919) % len(KEYS)]
    values = {
        "id": f"chat-{i:09d}-bench0", "kind": "chat", "model": model, "key": key,
        "client": f"10.0.{i % 50}.{i % 200}:5{i % 1000:04d}", "worker": worker, "backend": None,
        "replica": None, "requested_at": ended - dur / 1000, "started_at": ended - dur / 1000,
        "ended_at": ended, "queue_ms": 0.0, "ttft_ms": dur / 4, "duration_ms": dur,
        "tokens_in": 20 + i % 300, "tokens_out": 50 + i % 500, "embeddings": 0,
        "outcome": outcome, "status": 200 if outcome == "ok" else 503,
        "error": None if outcome == "ok" else f"{outcome}: worker {worker} said no",
        "stream": i % 2, "attempts": 1,
    }  # fmt: skip
    return tuple(values[c] for c in COLUMNS)


async def _offer(ledger: Ledger, rate: float, seconds: float) -> tuple[int, float]:
    """Offer `rate` records/s for `seconds` in 10 ms ticks; returns (offered, worst lag s)."""
    rng = random.Random(1)
    worst = 0.0
    stop = False

    async def ticker() -> None:
        nonlocal worst
        while not stop:
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            worst = max(worst, time.perf_counter() - t - 0.001)

    tick = asyncio.create_task(ticker())
    offered, start = 0, time.perf_counter()
    while (now := time.perf_counter()) - start < seconds:
        due = int((now - start) * rate)
        while offered < due:
            ledger.add(_record(offered, time.time(), rng))
            offered += 1
        await asyncio.sleep(0.01)
    stop = True
    await tick
    return offered, worst


def ingest(seconds: float) -> bool:
    ok = True
    with tempfile.TemporaryDirectory() as scratch:
        ledger = Ledger(LedgerSettings(path=f"{scratch}/h.sqlite3", flush_interval=0.25))

        async def run() -> tuple[int, float, float]:
            ledger.start()
            offered, worst = await _offer(ledger, 5000, seconds)
            t = time.perf_counter()
            await asyncio.to_thread(ledger.flush, 30)
            lagging = time.perf_counter() - t
            await ledger.stop()
            return offered, worst, lagging

        offered, worst, lagging = asyncio.run(run())
        print(
            f"   offered {offered} records at 5,000/s for {seconds:g} s: written {ledger.written}, "
            f"dropped {ledger.dropped}, last batch on disk {lagging * 1000:.0f} ms after the last "
            f"offer; event loop worst lag {worst * 1000:.1f} ms"
        )
        ok &= ledger.dropped == 0 and ledger.written == offered
        # capacity: as fast as records come (queue large enough to hold them all)
        n = int(5000 * seconds * 2)
        rng = random.Random(2)
        rows = [_record(i, time.time(), rng) for i in range(n)]
        fast = Ledger(LedgerSettings(path=f"{scratch}/h2.sqlite3", queue_size=n + 10))

        async def burst() -> float:
            fast.start()
            t = time.perf_counter()
            for row in rows:
                fast.add(row)
            await asyncio.to_thread(fast.flush, 120)
            took = time.perf_counter() - t
            await fast.stop()
            return took

        took = asyncio.run(burst())
        rate = fast.written / took
        print(f"   capacity: {fast.written} records written in {took:.2f} s")
        ok &= verdict("sustained ingest", rate, 5000, "records/s", higher_is_better=True)
        ok &= verdict(
            "event loop worst lag at 5,000 records/s", worst * 1000, 50, "ms",
            higher_is_better=False,
        )  # fmt: skip
    return ok


# ---- 3-5. queries and size ------------------------------------------------------------------


def generate(path: str, count: int, span_s: float, now: float) -> float:
    """`count` records evenly over `span_s` before `now`, through the ledger's batch writer."""
    conn = store.open_writer(path)
    rng = random.Random(3)
    t0 = time.perf_counter()
    step = span_s / count
    batch = 50_000
    for lo in range(0, count, batch):
        rows = [_record(i, now - span_s + i * step, rng) for i in range(lo, min(lo + batch, count))]
        store.write_batch(conn, rows)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - t0


def timed(conn: sqlite3.Connection, fn, repeat: int = 5) -> float:
    fn(conn)  # warm the page cache as a running gateway's would be
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn(conn)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def queries(usage_records: int, search_records: int) -> bool:
    ok = True
    now = time.time()
    with tempfile.TemporaryDirectory() as scratch:
        big = f"{scratch}/usage.sqlite3"
        took = generate(big, usage_records, 7 * 86400, now)
        size = os.path.getsize(big)
        print(
            f"   generated {usage_records:,} records over 7 days in {took:.0f} s "
            f"({usage_records / took:,.0f}/s through write_batch); file {size / 2**20:,.0f} MiB"
        )
        conn = store.connect(big, readonly=True)
        rollups = conn.execute("SELECT count(*) FROM rollup").fetchone()[0]
        print(f"   {rollups:,} per-minute rollup rows")
        for group in ("model", "key"):
            q = timed(conn, lambda c, g=group: store.usage(c, g, now - 86400, now))
            label = f"24-hour usage by {group} over {usage_records:,} records"
            ok &= verdict(label, q * 1000, 100, "ms", higher_is_better=False)
        q = timed(conn, lambda c: store.usage(c, "model", now - 7 * 86400, now), repeat=2)
        print(f"   (7-day usage by model: {q * 1000:.0f} ms)")
        per_million = size / usage_records * 1e6
        print(f"   database bytes per million records: {per_million / 2**20:.0f} MiB")
        conn.close()
        if search_records != usage_records:
            small = f"{scratch}/search.sqlite3"
            generate(small, search_records, 86400, now)
        else:
            small = big
        conn = store.connect(small, readonly=True)
        cases = {
            "newest page": lambda c: store.list_jobs(c, limit=50),
            "outcome=timeout": lambda c: store.list_jobs(c, limit=50, outcome="queue_timeout"),
            "model+key": lambda c: store.list_jobs(c, limit=50, model="phi3", key="ci"),
            "text 'gpu-03 said'": lambda c: store.list_jobs(c, limit=50, text="gpu-03 said"),
            "text with no match": lambda c: store.list_jobs(c, limit=50, text="no-such-thing"),
        }  # fmt: skip
        for label, fn in cases.items():
            q = timed(conn, fn)
            label = f"ended-jobs search over {search_records:,}: {label}"
            ok &= verdict(label, q * 1000, 100, "ms", higher_is_better=False)
        conn.close()
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--only", choices=("cpu", "ingest", "queries"), help="run one part (default: all)"
    )
    args = parser.parse_args()
    header("history: the usage ledger" + (" (--quick)" if args.quick else ""))
    ok = True
    if args.only in (None, "cpu"):
        print("-- what one finished request costs (in-process)")
        hot_path_cost()
        print("-- gateway CPU per request, ledger on vs off (same run, alternating rounds)")
        ok &= cpu_on_off(
            rounds=3 if args.quick else 8, requests=400 if args.quick else 2000, concurrency=16
        )
    if args.only in (None, "ingest"):
        print("-- ingest")
        ok &= ingest(seconds=2 if args.quick else 6)
    if args.only in (None, "queries"):
        print("-- queries")
        ok &= queries(
            usage_records=300_000 if args.quick else 10_000_000,
            search_records=300_000 if args.quick else 1_000_000,
        )
    print("== history:", "PASS" if ok else "MISS")


if __name__ == "__main__":
    main()
