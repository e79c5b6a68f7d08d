"""Which workers are failing: a share of their recent jobs, not any failure at all.

The gateway sends each worker's running totals (`processed` ok, `failures`); the panel keeps
a checkpoint of them every few seconds and compares the newest totals with those of about
`window_s` ago. A worker is failing when at least `min_jobs` jobs ended in that window and
`threshold` or more of them failed. Totals the panel did not see grow (an offline snapshot,
the first seconds after connecting) give no rate at all — never a false alarm.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CHECKPOINT_EVERY_S = 10.0  # 30 checkpoints per worker for a 5-minute window


@dataclass(frozen=True)
class FailureRate:
    worker_id: str
    failed: int
    jobs: int
    span_s: float  # how far back the comparison reaches (≤ the window)

    @property
    def share(self) -> float:
        return self.failed / self.jobs if self.jobs else 0.0


class FailureRates:
    """Per-worker job totals over a sliding window (bounded: one checkpoint per 10 s)."""

    def __init__(self, window_s: float = 300.0, threshold: float = 0.2, min_jobs: int = 5):
        self.window_s = window_s
        self.threshold = threshold
        self.min_jobs = min_jobs
        self._checkpoints: dict[str, deque[tuple[float, int, int]]] = {}
        self._latest: dict[str, tuple[float, int, int]] = {}

    def sample(self, workers: Mapping[str, Mapping[str, Any]], now: float) -> None:
        """Record the totals of every worker (call about once a second)."""
        for worker_id in self._latest.keys() - workers.keys():
            self._latest.pop(worker_id, None)
            self._checkpoints.pop(worker_id, None)
        for worker_id, worker in workers.items():
            ok, failed = int(worker.get("processed") or 0), int(worker.get("failures") or 0)
            points = self._checkpoints.get(worker_id)
            if points is None or (points and (ok < points[-1][1] or failed < points[-1][2])):
                points = self._checkpoints[worker_id] = deque()  # new, or totals went back
            self._latest[worker_id] = (now, ok, failed)
            if not points or now - points[-1][0] >= CHECKPOINT_EVERY_S:
                points.append((now, ok, failed))
            # Keep one checkpoint at or before the window's start, as the baseline.
            while len(points) > 1 and points[1][0] <= now - self.window_s:
                points.popleft()

    def rate(self, worker_id: str) -> FailureRate | None:
        """Jobs and failures of the window so far, or None before two samples."""
        points = self._checkpoints.get(worker_id)
        latest = self._latest.get(worker_id)
        if not points or latest is None:
            return None
        then, ok0, failed0 = points[0]
        now, ok, failed = latest
        if now <= then:
            return None
        jobs = (ok - ok0) + (failed - failed0)
        return FailureRate(worker_id, failed - failed0, jobs, now - then)

    def failing(self) -> list[FailureRate]:
        """Workers over the threshold, worst share first."""
        found = []
        for worker_id in self._latest:
            rate = self.rate(worker_id)
            if rate is not None and rate.jobs >= self.min_jobs and rate.share >= self.threshold:
                found.append(rate)
        return sorted(found, key=lambda r: (-r.share, r.worker_id))
