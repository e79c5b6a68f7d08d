"""The fleet (issue 12): several replicas sharing a real redis-server.

1. An action through a non-owner replica until it shows in a third replica's state stream:
   p50 / p95 (targets <= 150 / 300 ms).
2. Gateway CPU per request, clustering on against off, same run (target <= +10 %).
3. Throughput of two replicas behind one port (SO_REUSEPORT) against one replica, each
   with its own simulated workers, wrk as the client, same run (target >= 1.5x).
4. State-stream bytes per second at 5,000 workers over 3 replicas (three owners publishing
   heartbeat-like changes through Redis, as replicas do; one real replica serving a panel).

5. A backend edit through one replica until every other replica serves it (GET of the
   backend on each, polled from one thread per replica): p50 / p95 / max (target max <= 1 s).

    python bench/cluster.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent / "_support"))

import contextlib

import common
import httpx

REDIS = shutil.which("redis-server")
SUPPORT = Path(__file__).resolve().parent / "_support"


def start_redis(procs: list[common.Proc]) -> str:
    port = common.free_port()
    proc = common.Proc(
        "redis",
        [
            REDIS or "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
    )
    procs.append(proc)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            import socket

            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


_SCRATCH: list[Path] = []


def scratch() -> Path:
    """One temporary directory per run for the replicas' files (backends, ledger): never the
    working directory (a run left a backends.yaml in the checkout)."""
    if not _SCRATCH:
        import atexit
        import tempfile

        _SCRATCH.append(Path(tempfile.mkdtemp(prefix="bench-cluster-")))
        atexit.register(shutil.rmtree, _SCRATCH[0], True)
    return _SCRATCH[0]


def replica(procs: list[common.Proc], redis_url: str | None, name: str, *more: str) -> str:
    port = common.free_port()
    files = ["--backends-store-path", str(scratch() / f"backends-{name}.yaml")]
    files += ["--history-path", str(scratch() / f"history-{name}.sqlite3")]
    extra = ["--server-state-stream-rate", "4", "--server-open", "true", *files, *more]
    if redis_url:
        extra += ["--cluster-redis-url", redis_url, "--cluster-replica-id", name]
    proc = common.Proc(name, common.gateway_argv(port, *extra))
    procs.append(proc)
    url = f"http://127.0.0.1:{port}"
    common.wait_http(url + "/healthz", 20, proc=proc)
    return url


def worker(procs: list[common.Proc], url: str, name: str, *extra: str) -> common.Proc:
    argv = [common.PYTHON, "-m", "gatewaytui.cli.main", "--log-level", "warning", "worker",
            "--simulate", "--gateway", url.replace("http", "ws"), "--id", name,
            "--models", "bench-model", "--latency", "0", "--tokens-per-second", "0",
            *extra]  # fmt: skip
    proc = common.Proc(name, argv)
    procs.append(proc)
    return proc


def wait_workers(url: str, count: int, timeout: float = 20, *, own: bool = True) -> None:
    """Until `count` workers are connected to this very replica (`own`; a replica's state
    lists the whole fleet's: counting those made a bench start before its own worker was in,
    and the replica forwarded every request to another one), or seen by it (not `own`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = httpx.get(url + "/api/state", timeout=5).json()
        here = state["server"].get("replica")
        mine = [w for w in state["workers"] if not own or w.get("replica", here) == here]
        if sum(w["status"] != "gone" for w in mine) >= count:
            return
        time.sleep(0.05)
    raise TimeoutError(f"{url}: {count} workers did not connect")


# ---- 1. action -> visible in a third replica's stream ------------------------------------


def action_latency(procs: list[common.Proc], redis_url: str, rounds: int) -> list[float]:
    from websockets.sync.client import connect

    urls = [replica(procs, redis_url, f"r{i}") for i in (1, 2, 3)]
    worker(procs, urls[0], "w-owner")
    wait_workers(urls[2], 1, own=False)  # r3 sees r1's worker
    seen: dict[bool, threading.Event] = {True: threading.Event(), False: threading.Event()}
    stop = threading.Event()

    def watch() -> None:
        with connect(urls[2].replace("http", "ws") + "/api/state/stream") as ws:
            while not stop.is_set():
                try:
                    message = json.loads(ws.recv(timeout=0.5))
                except TimeoutError:
                    continue
                for item in message.get("upsert", {}).get("workers", []):
                    if item.get("id") == "w-owner" and "draining" in item:
                        seen[bool(item["draining"])].set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    time.sleep(1.0)  # let the watcher take its snapshot (not a synchronisation in a test)
    samples: list[float] = []
    with httpx.Client(timeout=10) as client:
        for i in range(rounds):
            draining = i % 2 == 0
            # Operators act at random moments, not in step with the stream's 4/s ticks: a
            # random pause keeps the rounds from locking onto one phase of the ticker.
            time.sleep(random.uniform(0.05, 0.3))
            seen[draining].clear()
            verb = "drain" if draining else "undrain"
            started = time.perf_counter()
            client.post(f"{urls[1]}/api/workers/w-owner/{verb}").raise_for_status()
            if seen[draining].wait(5):
                samples.append(time.perf_counter() - started)
    stop.set()
    watcher.join(2)
    return samples


# ---- 5. backend edit -> applied on every replica -----------------------------------------


def _poll_revision(
    client: httpx.Client, url: str, want: int, since: float, seen: dict[str, float]
) -> None:
    while time.perf_counter() - since < 5:
        answer = client.get(f"{url}/api/backends/bench-backend").json()
        if answer.get("revision") == want:
            seen[url] = time.perf_counter() - since
            return


def backend_edit_latency(
    procs: list[common.Proc], redis_url: str, rounds: int
) -> tuple[list[float], list[float]]:
    """Seconds from sending a PATCH to r1 until r2 and r3 both answer the new revision, and
    the PATCH's own answer time (the edit: a read and a compare-and-set in Redis)."""
    import tempfile

    scratch = tempfile.mkdtemp(prefix="bench-fleet-backends-")  # each replica's file copy
    urls = [
        replica(procs, redis_url, f"b{i}", "--backends-store-path", f"{scratch}/b{i}.yaml")
        for i in (1, 2, 3)
    ]
    spec = {"id": "bench-backend", "url": f"http://127.0.0.1:{common.free_port()}/v1"}
    httpx.post(urls[0] + "/api/backends", json=spec, timeout=10).raise_for_status()
    samples: list[float] = []
    answered: list[float] = []
    # One client (kept-alive connection) per polled replica, each used by one thread a round.
    pollers = {url: httpx.Client(timeout=10) for url in urls[1:]}
    with httpx.Client(timeout=10) as client:
        for i in range(rounds):
            time.sleep(random.uniform(0.05, 0.2))  # edits at random moments
            revision = i + 1
            for url in urls[1:]:  # every replica at the current revision before the edit
                _poll_revision(pollers[url], url, revision, time.perf_counter(), {})
            started = time.perf_counter()
            seen: dict[str, float] = {}
            body = {"labels": {"round": str(i)}, "revision": revision}
            client.patch(f"{urls[0]}/api/backends/bench-backend", json=body).raise_for_status()
            answered.append(time.perf_counter() - started)
            threads = [
                threading.Thread(
                    target=_poll_revision, args=(pollers[url], url, revision + 1, started, seen)
                )
                for url in urls[1:]
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(10)
            if len(seen) == 2:
                samples.append(max(seen.values()))
    for poller in pollers.values():
        poller.close()
    return samples, answered


# ---- 2. CPU per request, clustering on vs off --------------------------------------------


async def _drive(url: str, requests: int, concurrency: int) -> None:
    body = {"model": "bench-model", "messages": [{"role": "user", "content": "hi"}]}
    left = requests
    async with httpx.AsyncClient(timeout=30) as client:

        async def one() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                (await client.post(url + "/v1/chat/completions", json=body)).raise_for_status()

        await asyncio.gather(*(one() for _ in range(concurrency)))


def sched(pid: int) -> tuple[int, int]:
    """Nanoseconds on a CPU and runnable but waiting for one, summed over every thread of a
    process (/proc/<pid>/task/*/schedstat): finer than /proc/<pid>/stat's 10 ms ticks, and
    the wait says how much of a figure is the machine's other load."""
    ran = waited = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (task / "schedstat").read_text().split()
            ran += int(fields[0])
            waited += int(fields[1])
    return ran, waited


def cpu_ns(pid: int) -> int:
    return sched(pid)[0]


def cpu_per_request(
    procs: list[common.Proc], redis_url: str, requests: int, rounds: int
) -> dict[str, list[float]]:
    """Both gateways up at once (off: no Redis; on: a replica in a fleet), each with its
    own worker, driven in alternating rounds (off/on, then on/off, ...), so the machine's
    noise falls on both alike. Per round: the gateway process's CPU time per request."""
    urls: dict[str, str] = {}
    gateways: dict[str, common.Proc] = {}
    for label, redis in (("off", None), ("on", redis_url)):
        urls[label] = replica(procs, redis, f"cpu-{label}")
        gateways[label] = procs[-1]
        worker(procs, urls[label], f"cpu-w-{label}", "--concurrency", "16")
    for url in urls.values():
        wait_workers(url, 1)
        asyncio.run(_drive(url, 200, 8))  # warm up
    samples: dict[str, list[float]] = {"off": [], "on": []}
    for n in range(rounds):
        for label in ("off", "on") if n % 2 == 0 else ("on", "off"):
            pid = gateways[label].pid
            before = cpu_ns(pid)
            asyncio.run(_drive(urls[label], requests, 8))
            samples[label].append((cpu_ns(pid) - before) / requests / 1e3)
    return samples


# ---- 3. two replicas behind one port -----------------------------------------------------


def wrk_rps(port: int, seconds: int) -> float:
    script = Path("/tmp/bench-cluster-chat.lua")
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        'wrk.body = \'{"model":"bench-model","messages":[{"role":"user","content":"hi"}]}\'\n'
    )
    import subprocess

    out = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{seconds}s", "-s", str(script), f"http://127.0.0.1:{port}"
         "/v1/chat/completions"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise RuntimeError(out)


def reuseport(procs: list[common.Proc], redis_url: str, seconds: int) -> dict[str, Any]:
    """wrk against one shared port served by 1, then 2 replicas (each with its own worker).
    Besides req/s: how the kernel spread the requests over the replicas, and where the
    machine's CPU went (gateways, workers, wrk) while wrk ran."""
    import resource

    result: dict[str, Any] = {}
    for count in (1, 2):
        shared = common.free_port()
        gateways: list[tuple[common.Proc, str]] = []
        workers: list[common.Proc] = []
        for i in range(count):
            private = common.free_port()
            name = f"rp{count}-{i}"
            proc = common.Proc(
                name,
                [common.PYTHON, str(SUPPORT / "reuseport_gateway.py"), str(shared), str(private),
                 redis_url, name],
            )  # fmt: skip
            procs.append(proc)
            url = f"http://127.0.0.1:{private}"
            common.wait_http(url + "/healthz", 20, proc=proc)
            gateways.append((proc, url))
            workers.append(worker(procs, url, f"{name}-w", "--concurrency", "32"))
            wait_workers(url, 1)

        def served(gateways: list[tuple[common.Proc, str]] = gateways) -> list[int]:
            return [
                int(httpx.get(u + "/api/state", timeout=10).json()["server"]["requests_total"])
                for _, u in gateways
            ]

        before = served()
        cpu_before = [sched(p.pid) for p in (*(g for g, _ in gateways), *workers)]
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy = common.machine_ticks()
        rps = wrk_rps(shared, seconds)
        machine = common.busy_share(busy, common.machine_ticks())
        after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_after = [sched(p.pid) for p in (*(g for g, _ in gateways), *workers)]
        spent = [(b[0] - a[0]) / 1e9 for a, b in zip(cpu_before, cpu_after, strict=True)]
        waited = [(b[1] - a[1]) / 1e9 for a, b in zip(cpu_before, cpu_after, strict=True)]
        wrk_cpu = (after_children.ru_utime + after_children.ru_stime) - (
            children.ru_utime + children.ru_stime
        )
        result[str(count)] = {
            "rps": rps,
            "served": [b - a for a, b in zip(before, served(), strict=True)],
            "gateway_cpu": sum(spent[:count]) / seconds,
            "worker_cpu": sum(spent[count:]) / seconds,
            "gateway_wait": sum(waited[:count]) / seconds,
            "wrk_cpu": wrk_cpu / seconds,
            "machine_busy": machine,
        }
        for proc in procs[-2 * count :]:
            proc.stop()
        del procs[-2 * count :]
    return result


# ---- 4. stream bytes at 5,000 workers over 3 replicas ------------------------------------


def worker_item(worker_id: str, replica_id: str, beat: int) -> dict[str, Any]:
    return {
        "id": worker_id, "name": worker_id, "status": "idle", "status_reason": None,
        "models": ["bench-model"], "max_concurrency": 4, "preferred_batch_size": 32,
        "inflight": 0, "version": "0.1.0",
        "host": {"hostname": worker_id, "os": "Linux", "arch": "x86_64", "cpu_count": 8},
        "labels": {}, "remote_addr": "10.0.0.1:5000", "connected_at": "2026-12-07T00:00:00Z",
        "last_heartbeat": f"2026-12-07T00:00:{beat % 60:02d}Z", "gone_at": None,
        "draining": False, "drain_started_at": None, "cpu_percent": float(beat % 100),
        "mem_percent": 40.0, "processed": beat, "failures": 0, "tokens_in": 0,
        "tokens_out": 0, "embeddings": 0, "avg_processing_ms": 0.0, "per_model": {},
        "last_error": None, "last_error_at": None, "reconnects": 0, "replica": replica_id,
    }  # fmt: skip


async def _owners(redis_url: str, workers: int, seconds: float, stop: asyncio.Event) -> None:
    """Three owners, each with workers/3 workers heartbeating every 5 s, published the way
    replicas publish (changed ids, coalesced at 10/s)."""
    import redis.asyncio as aioredis

    from gatewaytui.gateway.cluster import keys

    client = aioredis.from_url(redis_url, decode_responses=True)
    owners = [f"owner{i}" for i in range(3)]
    ids = {o: [f"{o}-w{n:05d}" for n in range(workers // 3)] for o in owners}
    version = dict.fromkeys(owners, 0)
    for owner in owners:
        mapping = {w: json.dumps(worker_item(w, owner, 0)) for w in ids[owner]}
        await client.hset(keys.items(owner, "workers"), mapping=mapping)
    tick = 0
    while not stop.is_set():
        tick += 1
        for owner in owners:
            summary = {"id": owner, "advertise_url": "http://127.0.0.1:1", "status": "ready",
                       "workers": len(ids[owner]), "jobs": 0, "capacity": 4 * len(ids[owner]),
                       "inflight": 0, "draining": False, "version": "0.1.0"}  # fmt: skip
            await client.set(keys.replica(owner), json.dumps(summary), px=10_000)
            await client.sadd(keys.REPLICAS, owner)
            # 10 publications a second; each worker heartbeats once in 5 s: 1/50 per tick
            batch = ids[owner][(tick % 50) :: 50]
            mapping = {w: json.dumps(worker_item(w, owner, tick)) for w in batch}
            await client.hset(keys.items(owner, "workers"), mapping=mapping)
            version[owner] += 1
            note = {"r": owner, "v": version[owner], "c": {"workers": batch}, "d": {}}
            await client.publish(keys.CHANGES, json.dumps(note))
        await asyncio.sleep(0.1)
    await client.aclose()


def stream_bytes(procs: list[common.Proc], redis_url: str, workers: int, seconds: float) -> float:
    from websockets.sync.client import connect

    url = replica(procs, redis_url, "panel-replica")
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(
        target=loop.run_until_complete, args=(_owners(redis_url, workers, seconds, stop),)
    )
    thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = httpx.get(url + "/api/state", timeout=10).json()
        if len(state["workers"]) >= workers // 3 * 3:
            break
        time.sleep(0.2)
    total = 0
    with connect(url.replace("http", "ws") + "/api/state/stream", max_size=None) as ws:
        ws.recv(timeout=10)  # the snapshot
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            with contextlib.suppress(TimeoutError):
                total += len(ws.recv(timeout=1))
        elapsed = time.monotonic() - started
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)
    return total / elapsed


PARTS = ("action", "backends", "cpu", "reuseport", "stream")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small counts (CI)")
    parser.add_argument(
        "--only", default=",".join(PARTS), help=f"comma-separated parts: {', '.join(PARTS)}"
    )
    args = parser.parse_args()
    parts = set(args.only.split(","))
    common.header("fleet: replicas through redis (bench/cluster.py)")
    if REDIS is None:
        print("   redis-server is not on PATH: nothing measured (apt install redis-server)")
        return
    rounds, requests, cpu_rounds, seconds, workers, stream_s = (
        (10, 150, 4, 3, 1500, 3) if args.quick else (60, 500, 8, 8, 5000, 15)
    )
    with common.processes() as procs:
        redis_url = start_redis(procs)
        if "action" in parts:
            action_part(procs, redis_url, rounds)
        if "backends" in parts:
            backends_part(procs, redis_url, rounds)
        if "cpu" in parts:
            cpu_part(procs, redis_url, requests, cpu_rounds)
        if "reuseport" in parts:
            reuseport_part(procs, redis_url, seconds)
        if "stream" in parts:
            rate = stream_bytes(procs, redis_url, workers, stream_s)
            print(
                f"   state stream at {workers} workers over 3 replicas (heartbeats every 5 s): "
                f"{rate / 1024:.1f} KiB/s"
            )


def _stop_all_but_redis(procs: list[common.Proc]) -> None:
    for proc in procs[1:]:
        proc.stop()
    del procs[1:]


def backends_part(procs: list[common.Proc], redis_url: str, rounds: int) -> None:
    edits, answered = (sorted(s) for s in backend_edit_latency(procs, redis_url, rounds))
    print(f"   backend edit via r1 -> served by r2 and r3: {len(edits)}/{rounds} seen")
    print(
        f"     p50 {common.percentile(edits, 50) * 1000:.0f} ms, "
        f"p95 {common.percentile(edits, 95) * 1000:.0f} ms "
        f"(the PATCH's own answer: p50 {common.percentile(answered, 50) * 1000:.0f} ms)"
    )
    common.verdict(
        "  backend edit applied on all replicas, max",
        (edits[-1] if len(edits) == rounds else float("inf")) * 1000,
        1000,
        "ms",
        higher_is_better=False,
    )
    _stop_all_but_redis(procs)


def action_part(procs: list[common.Proc], redis_url: str, rounds: int) -> None:
    samples = sorted(action_latency(procs, redis_url, rounds))
    p50, p95 = common.percentile(samples, 50), common.percentile(samples, 95)
    print(f"   action via non-owner -> third replica's stream: {len(samples)}/{rounds} seen")
    common.verdict("  p50", p50 * 1000, 150, "ms", higher_is_better=False)
    common.verdict("  p95", p95 * 1000, 300, "ms", higher_is_better=False)
    _stop_all_but_redis(procs)


def cpu_part(procs: list[common.Proc], redis_url: str, requests: int, rounds: int) -> None:
    cpu = cpu_per_request(procs, redis_url, requests, rounds)
    off, on = (common.percentile(sorted(cpu[k]), 50) for k in ("off", "on"))
    ratios = sorted(b / a for a, b in zip(cpu["off"], cpu["on"], strict=True))
    print(
        f"   gateway CPU per chat ({rounds} interleaved rounds of {requests}): "
        f"off {off:.0f} µs, on {on:.0f} µs (medians); on/off per round "
        + ", ".join(f"{r:.2f}" for r in ratios)
    )
    common.verdict(
        "CPU per request, clustering on vs off (median of rounds)",
        (common.percentile(ratios, 50) - 1) * 100,
        10,
        "%",
        higher_is_better=False,
    )
    _stop_all_but_redis(procs)


def reuseport_part(procs: list[common.Proc], redis_url: str, seconds: int) -> None:
    if not shutil.which("wrk"):
        print("   wrk is not installed: SO_REUSEPORT throughput not measured")
        return
    runs = reuseport(procs, redis_url, seconds)
    for count, run in runs.items():
        print(
            f"   {count} replica(s) behind one port: {run['rps']:.0f} req/s, requests "
            f"per replica {run['served']}; CPU cores busy: gateways "
            f"{run['gateway_cpu']:.2f}, workers {run['worker_cpu']:.2f}, wrk "
            f"{run['wrk_cpu']:.2f}; gateways runnable but waiting for a CPU "
            f"{run['gateway_wait']:.2f} s/s; machine {run['machine_busy'] * 100:.0f} % busy"
        )
    common.verdict(
        "two replicas vs one (SO_REUSEPORT)",
        runs["2"]["rps"] / runs["1"]["rps"],
        1.5,
        "x",
        higher_is_better=True,
    )


if __name__ == "__main__":
    main()
