"""Picks a worker for a model in O(log n): one lazy heap per model and per model family.

Each heap holds entries `(key, tiebreak, seq, gen, worker)`; a worker's `gen` changes every
time its load or eligibility changes, which turns its older entries stale. Stale entries are
dropped when they reach the top, and a heap is rebuilt when stale ones outnumber live ones.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable

from gatewaytui.gateway.registry import WorkerRecord, model_family

Entry = tuple[float, int, int, int, WorkerRecord]


class Scheduler:
    """Strategies: least-busy (lowest load fraction), round-robin (least recently picked),
    fill-first (the fullest worker that still has a free slot)."""

    def __init__(self, strategy: str = "least-busy", family_matching: bool = True) -> None:
        self.strategy = strategy
        self.family_matching = family_matching
        self._heaps: dict[str, list[Entry]] = {}
        self._members: dict[str, dict[str, WorkerRecord]] = {}
        self._seq = itertools.count()
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
                    self._heaps.pop(key, None)
        worker.gen += 1

    def reindex(self, worker: WorkerRecord, old_keys: Iterable[str]) -> None:
        self.remove(worker, old_keys)
        self.add(worker)

    # -- load changes -----------------------------------------------------------------------

    def members(self, key: str) -> dict[str, WorkerRecord]:
        """Workers listed under a heap key (`m:<model>` or `f:<family>`), eligible or not."""
        return self._members.get(key, {})

    def _entry(self, worker: WorkerRecord) -> Entry:
        load = worker.inflight / worker.max_concurrency
        if self.strategy == "round-robin":
            key, tiebreak = float(worker.last_pick), worker.order
        elif self.strategy == "fill-first":
            key, tiebreak = -load, worker.order
        else:
            key, tiebreak = load, worker.last_pick
        return (key, tiebreak, next(self._seq), worker.gen, worker)

    def update(self, worker: WorkerRecord) -> None:
        """Re-rank a worker after its load or eligibility changed."""
        worker.gen += 1
        if not worker.accepts_jobs:
            return
        entry = self._entry(worker)
        for key in self._keys(worker):
            heap = self._heaps.get(key)
            if heap is None:
                heap = self._heaps[key] = []
            heapq.heappush(heap, entry)
            if len(heap) > 2 * len(self._members.get(key, ())) + 64:
                self._rebuild(key)

    def _rebuild(self, key: str) -> None:
        live = [self._entry(w) for w in self._members.get(key, {}).values() if w.accepts_jobs]
        # _entry stamps the current gen, so rebuilt entries stay valid.
        heapq.heapify(live)
        self._heaps[key] = live

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

    def _pick_from(self, key: str, exclude: frozenset[str]) -> WorkerRecord | None:
        heap = self._heaps.get(key)
        if not heap:
            return None
        skipped: list[Entry] = []
        found: WorkerRecord | None = None
        while heap:
            entry = heap[0]
            worker = entry[4]
            if entry[3] != worker.gen or not worker.accepts_jobs:
                heapq.heappop(heap)
                continue
            if worker.id in exclude:
                skipped.append(heapq.heappop(heap))
                continue
            found = worker
            break
        for entry in skipped:
            heapq.heappush(heap, entry)
        return found

    def release(self, worker: WorkerRecord) -> None:
        """Give back a slot reserved by `pick`."""
        if worker.inflight > 0:
            worker.inflight -= 1
        self.update(worker)
