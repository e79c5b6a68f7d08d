"""Scheduler.pick + release at 5,000 workers, per strategy, in-process (no I/O).

Workers get 1-3 models each from a pool of quantised variants (`llama3:8b-q4_K_M`, ...) and a
varied max concurrency (1-32). The loop keeps the fleet partly busy: it picks a batch, then
releases the oldest outstanding batch once about a quarter of all slots are taken, so heaps see
real load changes, stale entries and rebuilds. Timing is batched (perf_counter_ns around a
batch of --batch calls): mean = total time / calls, p99 = the 99th percentile of batch means.

Scenarios:
  exact    requests name a model some workers list (skewed: a few models are popular)
  family   requests name only the family (`llama3:8b`): the exact heap misses, the family
           heap answers (model_family_matching)
  one-model  all 5,000 workers serve the same single model (one 5,000-entry heap)

    python bench/scheduler_pick.py           # ~15 s
    python bench/scheduler_pick.py --quick
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "_support"))
from common import header, percentile, verdict

from gatewaytui.gateway.registry import WorkerRecord, model_family
from gatewaytui.gateway.scheduler import Scheduler
from gatewaytui.schema.protocol import RegisterFrame

STRATEGIES = ("least-busy", "round-robin", "fill-first")
BASES = [
    "llama3:8b",
    "llama3:70b",
    "qwen2.5:7b",
    "qwen2.5:32b",
    "mistral:7b",
    "mixtral:8x7b",
    "gemma2:9b",
    "gemma2:27b",
    "phi3:mini",
    "phi3:medium",
    "deepseek-r1:14b",
    "deepseek-r1:32b",
    "codellama:13b",
    "starcoder2:15b",
    "nomic-embed:v1.5",
    "bge-m3:567m",
]
QUANTS = ["q4_K_M", "q5_K_M", "q8_0", "fp16"]
CONCURRENCY = [1, 2, 4, 4, 8, 8, 16, 32]


def build_workers(n: int, rng: random.Random, *, one_model: bool) -> list[WorkerRecord]:
    pool = [f"{b}-{q}" for b in BASES for q in QUANTS]
    workers = []
    for i in range(n):
        models = ["llama3:8b-q4_K_M"] if one_model else rng.sample(pool, rng.randint(1, 3))
        frame = RegisterFrame(
            id=f"w{i:05d}", models=models, max_concurrency=rng.choice(CONCURRENCY)
        )
        record = WorkerRecord(frame, None, None, i + 1)
        record.heard_from = True
        workers.append(record)
    return workers


def request_stream(workers: list[WorkerRecord], scenario: str, n: int, rng: random.Random):
    """Requested model names, skewed towards a few popular models (as real traffic is)."""
    if scenario == "one-model":
        return ["llama3:8b-q4_K_M"] * n
    served = sorted({m for w in workers for m in w.models})
    if scenario == "family":
        served = sorted({model_family(m) for m in served})
    weights = [1 / (rank + 1) for rank in range(len(served))]
    rng.shuffle(served)
    return rng.choices(served, weights=weights, k=n)


def run(strategy: str, scenario: str, args: argparse.Namespace) -> dict:
    rng = random.Random(args.seed)
    workers = build_workers(args.workers, rng, one_model=scenario == "one-model")
    sched = Scheduler(strategy, family_matching=True)
    rebuilds = [0, 0]  # count, ns (an older lazy-heap scheduler rebuilt heaps inline)
    plain_rebuild = getattr(sched, "_rebuild", None)
    if plain_rebuild is not None:

        def counted_rebuild(key: str) -> None:
            t = time.perf_counter_ns()
            plain_rebuild(key)
            rebuilds[0] += 1
            rebuilds[1] += time.perf_counter_ns() - t

        sched._rebuild = counted_rebuild  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    for w in workers:
        sched.add(w)
    add_s = time.perf_counter() - t0
    if args.gc == "freeze":
        gc.collect()
        gc.freeze()
    capacity = sum(w.max_concurrency for w in workers)
    busy_target = capacity // 4
    requests = request_stream(workers, scenario, args.picks, rng)
    batch = args.batch
    outstanding: deque[WorkerRecord] = deque()
    pick_ns: list[float] = []
    release_ns: list[float] = []
    misses = 0
    pick = sched.pick
    release = sched.release
    clock = time.perf_counter_ns
    gen2_before = gc.get_stats()[2]["collections"]
    for start in range(0, len(requests) - batch + 1, batch):
        chunk = requests[start : start + batch]
        got: list[WorkerRecord | None] = [None] * batch
        t = clock()
        for i, model in enumerate(chunk):
            got[i] = pick(model)
        pick_ns.append((clock() - t) / batch)
        for w in got:
            if w is None:
                misses += 1
            else:
                outstanding.append(w)
        if len(outstanding) >= busy_target or misses:
            gone = [outstanding.popleft() for _ in range(min(batch, len(outstanding)))]
            if gone:
                t = clock()
                for w in gone:
                    release(w)
                release_ns.append((clock() - t) / len(gone))
    gen2 = gc.get_stats()[2]["collections"] - gen2_before
    heap_entries = sum(len(h) for h in sched._heaps.values())
    pick_sorted, release_sorted = sorted(pick_ns), sorted(release_ns)
    return {
        "pick_mean": sum(pick_ns) / len(pick_ns) / 1000,
        "pick_p99": percentile(pick_sorted, 99) / 1000,
        "pick_max": pick_sorted[-1] / 1000,
        "release_mean": sum(release_ns) / max(len(release_ns), 1) / 1000,
        "release_p99": percentile(release_sorted, 99) / 1000,
        "misses": misses,
        "rebuilds": rebuilds[0],
        "rebuild_ms": rebuilds[1] / 1e6,
        "gen2": gen2,
        "calls": len(pick_ns) * batch,
        "add_ms": add_s * 1000,
        "heap_entries": heap_entries,
        "heaps": len(sched._heaps),
        "capacity": capacity,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=5000)
    parser.add_argument("--picks", type=int, default=200_000, help="pick calls per scenario")
    parser.add_argument("--batch", type=int, default=100, help="calls per timed batch")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--scenarios", default="exact,family,one-model")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--target-us", type=float, default=20.0)
    parser.add_argument(
        "--gc",
        choices=["on", "off", "freeze"],
        default="freeze",
        help="gc.freeze() after set-up as the gateway does at start (freeze), plain GC (on), "
        "or disabled (off)",
    )
    parser.add_argument("--quick", action="store_true", help="a few seconds, for CI smoke")
    args = parser.parse_args()
    if args.gc == "off":
        gc.disable()
    if args.quick:
        args.workers, args.picks = 1000, 10_000
    header(f"scheduler_pick: Scheduler.pick + release at {args.workers} workers")
    print(
        f"   {args.picks} picks per scenario, timed in batches of {args.batch}; "
        "about 1/4 of all slots kept busy"
    )
    print(
        f"   {'strategy':<12} {'scenario':<10} {'pick mean':>9} {'p99':>7} {'max':>7} "
        f"{'release':>8} {'p99':>7} {'pair':>7} {'rebuilds (ms)':>14} {'gen2 gc':>7}"
    )
    worst_mean = worst_p99 = 0.0
    for strategy in args.strategies.split(","):
        for scenario in args.scenarios.split(","):
            r = run(strategy, scenario, args)
            worst_mean = max(worst_mean, r["pick_mean"])
            worst_p99 = max(worst_p99, r["pick_p99"])
            pair = r["pick_mean"] + r["release_mean"]
            rebuilds = f"{r['rebuilds']} ({r['rebuild_ms']:.0f})"
            print(
                f"   {strategy:<12} {scenario:<10} {r['pick_mean']:7.2f}us {r['pick_p99']:5.1f}us "
                f"{r['pick_max']:5.0f}us {r['release_mean']:6.2f}us {r['release_p99']:5.1f}us "
                f"{pair:5.1f}us {rebuilds:>14} {r['gen2']:>7}"
                + (f"  {r['misses']} misses" if r["misses"] else "")
            )
    print(
        "   (per call, microseconds; p99/max are of batch means; pair = pick + release mean;\n"
        "    rebuilds = heap rebuilds during the run and their total time; gen2 gc = full\n"
        "    garbage collections during the run)"
    )
    ok = verdict("worst pick mean", worst_mean, args.target_us, "us", higher_is_better=False)
    ok &= verdict(
        "worst pick p99 (batch means)", worst_p99, args.target_us, "us", higher_is_better=False
    )
    print(f"\noverall: {'PASS' if ok else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
