"""The scheduler's strategies, family matching, eligibility and exclusion."""

from __future__ import annotations

from collections import Counter

import pytest

from gatewaytui.gateway.registry import WorkerRegistry, model_family
from gatewaytui.gateway.scheduler import Scheduler
from gatewaytui.schema.protocol import RegisterFrame


def fleet(strategy: str, spec: dict[str, tuple[list[str], int]], family: bool = True):
    registry = WorkerRegistry()
    scheduler = Scheduler(strategy, family)
    workers = {}
    for worker_id, (models, concurrency) in spec.items():
        frame = RegisterFrame(id=worker_id, models=models, max_concurrency=concurrency)
        worker, _ = registry.register(frame, None, None)
        scheduler.add(worker)
        workers[worker_id] = worker
    return registry, scheduler, workers


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("llama3:8b-q4", "llama3:8b"),
        ("llama3:8b-instruct-q4_K_M", "llama3:8b"),
        ("llama3:8b", "llama3:8b"),
        ("nomic-embed-text", "nomic-embed-text"),
        ("Qwen2.5:7B-q8", "qwen2.5:7b"),
    ],
)
def test_model_family(name, family):
    assert model_family(name) == family


def test_least_busy_spreads_by_load_fraction():
    _, scheduler, w = fleet("least-busy", {"a": (["m"], 4), "b": (["m"], 2)})
    picks = [scheduler.pick("m").id for _ in range(6)]
    assert Counter(picks) == {"a": 4, "b": 2}
    assert scheduler.pick("m") is None  # every slot taken
    assert (w["a"].inflight, w["b"].inflight) == (4, 2)
    scheduler.release(w["b"])
    assert scheduler.pick("m").id == "b"


def test_least_busy_prefers_idle_worker():
    _, scheduler, _ = fleet("least-busy", {"a": (["m"], 4), "b": (["m"], 4)})
    first = scheduler.pick("m")
    second = scheduler.pick("m")
    assert {first.id, second.id} == {"a", "b"}


def test_round_robin_rotates():
    _, scheduler, _ = fleet("round-robin", {"a": (["m"], 10), "b": (["m"], 10), "c": (["m"], 10)})
    picks = [scheduler.pick("m").id for _ in range(6)]
    assert picks == ["a", "b", "c", "a", "b", "c"]


def test_fill_first_packs_one_worker_before_the_next():
    _, scheduler, w = fleet("fill-first", {"a": (["m"], 3), "b": (["m"], 3)})
    picks = [scheduler.pick("m").id for _ in range(5)]
    assert picks == ["a", "a", "a", "b", "b"]
    scheduler.release(w["b"])
    scheduler.release(w["b"])  # a 3/3 (full), b 0/3
    scheduler.release(w["a"])  # a 2/3 is now the fullest worker with a free slot
    assert scheduler.pick("m").id == "a"
    assert scheduler.pick("m").id == "b"
    assert (w["a"].inflight, w["b"].inflight) == (3, 1)


def test_exact_model_before_family():
    _, scheduler, _ = fleet(
        "least-busy", {"q4": (["llama3:8b-q4"], 1), "exact": (["llama3:8b"], 1)}
    )
    assert scheduler.pick("llama3:8b").id == "exact"
    assert scheduler.pick("llama3:8b").id == "q4"  # exact one is full: family fallback
    assert scheduler.pick("llama3:8b") is None


def test_family_matching_can_be_turned_off():
    _, scheduler, _ = fleet("least-busy", {"q4": (["llama3:8b-q4"], 1)}, family=False)
    assert scheduler.pick("llama3:8b") is None
    assert scheduler.pick("llama3:8b-q4").id == "q4"


def test_draining_not_ready_and_gone_are_skipped():
    registry, scheduler, w = fleet(
        "least-busy", {"d": (["m"], 5), "n": (["m"], 5), "g": (["m"], 5), "ok": (["m"], 5)}
    )
    w["d"].counters.draining = True
    scheduler.update(w["d"])
    w["n"].reported_ready = False
    scheduler.update(w["n"])
    registry.mark_gone(w["g"])
    scheduler.remove(w["g"])
    picks = {scheduler.pick("m").id for _ in range(5)}
    assert picks == {"ok"}
    assert scheduler.pick("m") is None


def test_exclude_skips_a_worker_but_keeps_it_for_others():
    _, scheduler, _ = fleet("least-busy", {"a": (["m"], 5), "b": (["m"], 5)})
    assert scheduler.pick("m", frozenset({"a"})).id == "b"
    assert scheduler.pick("m", frozenset({"a"})).id == "b"
    assert scheduler.pick("m").id == "a"


def test_heaps_stay_bounded_under_churn():
    _, scheduler, _ = fleet("least-busy", {f"w{i}": (["m"], 4) for i in range(50)})
    for _ in range(20_000):
        worker = scheduler.pick("m")
        scheduler.release(worker)
    assert len(scheduler._heaps["m:m"]) == 50  # one entry per eligible worker, never more


def test_pick_at_5000_workers_respects_capacity():
    _, scheduler, _ = fleet("least-busy", {f"w{i}": (["m", "e"], 2) for i in range(5000)})
    picked = Counter(scheduler.pick("m").id for _ in range(10_000))
    assert len(picked) == 5000 and set(picked.values()) == {2}
    assert scheduler.pick("m") is None
    assert scheduler.pick("e") is None  # the same slots serve both models


def test_job_frames_built_on_the_hot_path_match_the_schema():
    from gatewaytui.gateway.jobs import job_frame
    from gatewaytui.schema.protocol import GATEWAY_FRAME_ADAPTER, JobFrame

    frame = job_frame("chat-1", "chat", "m", True, {"model": "m", "messages": []})
    parsed = GATEWAY_FRAME_ADAPTER.validate_python(frame)
    assert isinstance(parsed, JobFrame) and parsed.model_dump() == frame


def test_indexed_heap_keeps_order_through_random_moves_and_removals():
    import random

    from gatewaytui.gateway.scheduler import IndexedHeap

    rng = random.Random(7)
    _, _, workers = fleet("least-busy", {f"w{i}": (["m"], 4) for i in range(200)})
    heap, ranks = IndexedHeap(), {}
    for step in range(20_000):
        worker = workers[f"w{rng.randrange(200)}"]
        if rng.random() < 0.2:
            heap.discard(worker.id)
            ranks.pop(worker.id, None)
        else:
            ranks[worker.id] = (rng.randrange(50) / 10, step)
            heap.set(worker, ranks[worker.id])
        if step % 500 == 0:
            ordered = [ranks[w.id] for w in heap.in_order()]
            assert ordered == sorted(ranks.values())
        assert len(heap) == len(ranks)
        if ranks:
            assert ranks[heap.top().id] == min(ranks.values())


def test_a_worker_made_ineligible_behind_the_schedulers_back_is_not_picked():
    _, scheduler, w = fleet("least-busy", {"a": (["m"], 5), "b": (["m"], 5)})
    w["a"].counters.draining = True  # no scheduler.update: the pick must still skip it
    w["b"].counters.draining = True
    assert scheduler.pick("m") is None
    w["b"].counters.draining = False
    scheduler.update(w["b"])
    assert scheduler.pick("m").id == "b"


def test_free_slot_and_serves_peek_without_reserving():
    """What the fleet's forwarder asks on every request: a peek, nothing reserved."""
    _, scheduler, w = fleet("least-busy", {"a": (["llama3:8b"], 1)})
    assert scheduler.has_free_slot("llama3:8b") and scheduler.has_free_slot("llama3:8b-q4")
    assert w["a"].inflight == 0
    assert scheduler.pick("llama3:8b").id == "a"
    assert not scheduler.has_free_slot("llama3:8b")  # busy ...
    assert scheduler.serves("llama3:8b")  # ... but it serves the model
    w["a"].counters.draining = True
    scheduler.update(w["a"])
    assert not scheduler.serves("llama3:8b") and not scheduler.has_free_slot("llama3:8b")
    assert not scheduler.serves("other")
