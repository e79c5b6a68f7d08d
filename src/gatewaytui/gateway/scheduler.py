"""Picks a worker for a model in O(log n): one indexed heap per model and per model family.

A heap holds only the workers that can take a job now (serving, not draining, a free slot),
ranked by the strategy. Every worker remembers its position in each heap, so a load change
moves it up or down in place: no stale entries, no rebuilds, no pauses that grow with the
fleet (an earlier lazy heap rebuilt 5,000-entry heaps inline; bench/scheduler_pick.py).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator

from gatewaytui.gateway.registry import WorkerRecord, model_family

Rank = tuple[float, ...]


class IndexedHeap:
    """A binary min-heap of workers by rank, with each worker's index kept for O(log n) moves."""

    __slots__ = ("_pos", "_ranks", "_workers")

    def __init__(self) -> None:
        self._ranks: list[Rank] = []
        self._workers: list[WorkerRecord] = []
        self._pos: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._workers)

    def __contains__(self, worker_id: str) -> bool:
        return worker_id in self._pos

    def top(self) -> WorkerRecord | None:
        return self._workers[0] if self._workers else None

    def set(self, worker: WorkerRecord, rank: Rank) -> None:
        """Insert the worker, or move it to its new rank."""
        index = self._pos.get(worker.id)
        if index is None:
            index = len(self._workers)
            self._ranks.append(rank)
            self._workers.append(worker)
            self._pos[worker.id] = index
            self._up(index)
            return
        old = self._ranks[index]
        self._ranks[index] = rank
        if rank < old:
            self._up(index)
        elif rank > old:
            self._down(index)

    def discard(self, worker_id: str) -> None:
        index = self._pos.pop(worker_id, None)
        if index is None:
            return
        last_rank, last_worker = self._ranks.pop(), self._workers.pop()
        if index == len(self._workers):
            return
        old = self._ranks[index]
        self._ranks[index], self._workers[index] = last_rank, last_worker
        self._pos[last_worker.id] = index
        if last_rank < old:
            self._up(index)
        else:
            self._down(index)

    def in_order(self) -> Iterator[WorkerRecord]:
        """Workers best first, lazily: O(k log k) for the first k (used to skip exclusions)."""
        if not self._workers:
            return
        frontier: list[tuple[Rank, int]] = [(self._ranks[0], 0)]
        size = len(self._workers)
        while frontier:
            _, index = heapq.heappop(frontier)
            yield self._workers[index]
            for child in (2 * index + 1, 2 * index + 2):
                if child < size:
                    heapq.heappush(frontier, (self._ranks[child], child))

    def _up(self, index: int) -> None:
        """Move the entry at `index` towards the root (a hole moves, not repeated swaps)."""
        ranks, workers, pos = self._ranks, self._workers, self._pos
        rank, worker = ranks[index], workers[index]
        while index > 0:
            parent = (index - 1) >> 1
            if not rank < ranks[parent]:
                break
            ranks[index], workers[index] = ranks[parent], workers[parent]
            pos[workers[index].id] = index
            index = parent
        ranks[index], workers[index] = rank, worker
        pos[worker.id] = index

    def _down(self, index: int) -> None:
        """Move the entry at `index` towards the leaves."""
        ranks, workers, pos = self._ranks, self._workers, self._pos
        rank, worker = ranks[index], workers[index]
        size = len(ranks)
        while True:
            child = 2 * index + 1
            if child >= size:
                break
            if child + 1 < size and ranks[child + 1] < ranks[child]:
                child += 1
            if not ranks[child] < rank:
                break
            ranks[index], workers[index] = ranks[child], workers[child]
            pos[workers[index].id] = index
            index = child
        ranks[index], workers[index] = rank, worker
        pos[worker.id] = index


class Scheduler:
    """Strategies: least-busy (lowest load fraction), round-robin (least recently picked),
    fill-first (the fullest worker that still has a free slot)."""

    def __init__(self, strategy: str = "least-busy", family_matching: bool = True) -> None:
        self.strategy = strategy
        self.family_matching = family_matching
        self._heaps: dict[str, IndexedHeap] = {}
        self._members: dict[str, dict[str, WorkerRecord]] = {}
        self._picks = 0

    # -- membership -------------------------------------------------------------------------

    @staticmethod
    def _keys(worker: WorkerRecord) -> Iterable[str]:
        for model in worker.models:
            yield "m:" + model
        for family in worker.families:
            yield "f:" + family

    def add(self, worker: WorkerRecord) -> None:
        """Index a worker under its models and families (call again after models change)."""
        for key in self._keys(worker):
            self._members.setdefault(key, {})[worker.id] = worker
        self.update(worker)

    def remove(self, worker: WorkerRecord, keys: Iterable[str] | None = None) -> None:
        for key in list(keys) if keys is not None else list(self._keys(worker)):
            members = self._members.get(key)
            if members is not None:
                members.pop(worker.id, None)
                if not members:
                    del self._members[key]
            heap = self._heaps.get(key)
            if heap is not None:
                heap.discard(worker.id)
                if not heap:
                    del self._heaps[key]

    def reindex(self, worker: WorkerRecord, old_keys: Iterable[str]) -> None:
        self.remove(worker, old_keys)
        self.add(worker)

    # -- load changes -----------------------------------------------------------------------

    def members(self, key: str) -> dict[str, WorkerRecord]:
        """Workers listed under a heap key (`m:<model>` or `f:<family>`), eligible or not."""
        return self._members.get(key, {})

    def _rank(self, worker: WorkerRecord) -> Rank:
        load = worker.inflight / worker.max_concurrency
        if self.strategy == "round-robin":
            return (worker.last_pick, worker.order)
        if self.strategy == "fill-first":
            return (-load, worker.order)
        return (load, worker.last_pick, worker.order)

    def update(self, worker: WorkerRecord) -> None:
        """Re-rank a worker after its load or eligibility changed."""
        if worker.accepts_jobs:
            rank = self._rank(worker)
            for key in self._keys(worker):
                heap = self._heaps.get(key)
                if heap is None:
                    heap = self._heaps[key] = IndexedHeap()
                heap.set(worker, rank)
            return
        for key in self._keys(worker):
            heap = self._heaps.get(key)
            if heap is not None:
                heap.discard(worker.id)

    # -- picking ----------------------------------------------------------------------------

    def pick(self, model: str, exclude: frozenset[str] = frozenset()) -> WorkerRecord | None:
        """Choose and reserve a slot on a worker for `model` (exact name, then family)."""
        worker = self._pick_from("m:" + model, exclude)
        if worker is None and self.family_matching:
            worker = self._pick_from("f:" + model_family(model), exclude)
        if worker is not None:
            self._picks += 1
            worker.last_pick = self._picks
            worker.inflight += 1
            self.update(worker)
        return worker

    def has_free_slot(self, model: str) -> bool:
        """A worker or backend would take a job for `model` right now (nothing reserved):
        the fleet's forwarder asks this on every request, so it is a heap peek."""
        if self._pick_from("m:" + model, frozenset()) is not None:
            return True
        family = "f:" + model_family(model)
        return self.family_matching and self._pick_from(family, frozenset()) is not None

    def serves(self, model: str) -> bool:
        """A worker or backend here serves `model` now, busy or not (not draining, ready)."""
        keys = ["m:" + model]
        if self.family_matching:
            keys.append("f:" + model_family(model))
        return any(
            w.gone_at is None
            and not w.counters.draining
            and not w.self_draining
            and w.reported_ready
            for key in keys
            for w in self.members(key).values()
        )

    def _pick_from(self, key: str, exclude: frozenset[str]) -> WorkerRecord | None:
        heap = self._heaps.get(key)
        while heap:
            top = heap.top()
            if top is not None and top.accepts_jobs:
                break
            # Heaps hold eligible workers only; a change that skipped `update` is mended here.
            heap.discard(top.id)  # type: ignore[union-attr]
        if not heap:
            return None
        if not exclude:
            return heap.top()
        return next((w for w in heap.in_order() if w.id not in exclude and w.accepts_jobs), None)

    def release(self, worker: WorkerRecord) -> None:
        """Give back a slot reserved by `pick`."""
        if worker.inflight > 0:
            worker.inflight -= 1
        self.update(worker)
