"""Merging answers from several ledgers (one per fleet replica) into one.

The fleet asks the other replicas for the same route and passes their answers here with
its own: pages merge newest-first (with a cursor that remembers how far each replica's
ledger was read), usage rows add up (histograms too, then percentiles are recomputed from
the summed buckets; rates over the span the oldest ledger covers), series points add up
per minute.
"""

from __future__ import annotations

import base64
import heapq
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from gatewaytui.gateway.history.store import percentile
from gatewaytui.schema.history import (
    HistoryJobsPage,
    SeriesPoint,
    UsageReport,
    UsageRow,
    UsageSeries,
)

EXHAUSTED = "x"  # in a fleet cursor: this replica has nothing older


@dataclass
class FleetCursor:
    """Where a fleet-wide listing stopped: each replica's own cursor (`s<seq>` in its
    ledger, `""` from its newest, `x` nothing left) and `t`, the `ended_at` of the last job
    shown — a replica not in `at` (it did not answer, or joined since) goes on from there,
    so pages never repeat a job nor show one newer than the page before."""

    t: float | None = None
    at: dict[str, str] = field(default_factory=dict)
    default: str = ""  # a plain cursor (`s…`, `t…`) given to every replica

    @classmethod
    def parse(cls, cursor: str | None) -> FleetCursor:
        if not cursor:
            return cls()
        if not cursor.startswith("f"):
            return cls(default=cursor)
        try:
            raw = json.loads(base64.urlsafe_b64decode(_padded(cursor[1:])))
            t = raw["t"]
            at = {str(k): str(v) for k, v in raw["at"].items()}
            return cls(t=None if t is None else float(t), at=at)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ValueError("cursor: not a cursor this gateway returned") from None

    def encode(self) -> str:
        raw = json.dumps({"t": self.t, "at": self.at}, separators=(",", ":"))
        return "f" + base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    def for_replica(self, replica: str) -> str | None:
        """The cursor to ask `replica` with; None: do not ask it (nothing left there)."""
        if replica in self.at:
            mine = self.at[replica]
            return None if mine == EXHAUSTED else mine
        if self.t is not None:
            return f"t{self.t!r}"
        return self.default


def _padded(text: str) -> bytes:
    return (text + "=" * (-len(text) % 4)).encode()


def merge_jobs(
    pages: Mapping[str, HistoryJobsPage],
    limit: int,
    cursor: FleetCursor | None = None,
    asked: Mapping[str, str] | None = None,
) -> HistoryJobsPage:
    """Newest first across replicas (`pages` by replica id), at most `limit`. Each
    replica's page is taken in its own order; the next cursor says, per replica, how far
    this page went into it (see `FleetCursor`)."""
    cursor = cursor or FleetCursor()
    asked = asked or {}
    streams = [[(job.ended_at, replica, i) for i, job in enumerate(page.jobs)]
               for replica, page in pages.items()]  # fmt: skip
    merged = list(heapq.merge(*streams, key=lambda e: e[0], reverse=True))[:limit]
    taken: dict[str, int] = dict.fromkeys(pages, 0)
    for _, replica, _ in merged:
        taken[replica] += 1
    at = {r: v for r, v in cursor.at.items() if v == EXHAUSTED}
    for replica, page in pages.items():
        k = taken[replica]
        if k == len(page.jobs):
            at[replica] = page.next_cursor or EXHAUSTED
        elif k == 0:
            at[replica] = asked.get(replica, cursor.for_replica(replica) or "")
        else:
            last = page.jobs[k - 1]
            at[replica] = f"s{last.seq}" if last.seq is not None else f"t{last.ended_at!r}"
    jobs = [pages[replica].jobs[i] for _, replica, i in merged]
    t = jobs[-1].ended_at if jobs else cursor.t
    more = any(value != EXHAUSTED for value in at.values())
    next_cursor = FleetCursor(t=t, at=at).encode() if more else None
    return HistoryJobsPage(jobs=jobs, next_cursor=next_cursor)


def covered_seconds(start: float, end: float, since: float | None) -> float:
    """The part of [start, end) the ledger(s) recorded: what rates are per second over."""
    return max(end - max(start, since if since is not None else start), 0.0)


def earliest(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return min(known) if known else None


def finish_row(row: UsageRow, seconds: float) -> UsageRow:
    """Rates and percentiles from a row's sums and buckets."""
    row.request_rate = round(row.requests / seconds, 6) if seconds > 0 else 0.0
    row.error_rate = round(row.errors / row.requests, 6) if row.requests else 0.0
    row.latency_p50_ms = percentile(row.latency_buckets, 0.50)
    row.latency_p95_ms = percentile(row.latency_buckets, 0.95)
    row.ttft_p50_ms = percentile(row.ttft_buckets, 0.50)
    row.ttft_p95_ms = percentile(row.ttft_buckets, 0.95)
    return row


def _add(a: list[int], b: list[int]) -> list[int]:
    if len(a) < len(b):
        a = a + [0] * (len(b) - len(a))
    return [x + (b[i] if i < len(b) else 0) for i, x in enumerate(a)]


def merge_usage(reports: Sequence[UsageReport]) -> UsageReport:
    """One report whose rows are the per-group sums of every replica's rows."""
    if not reports:
        raise ValueError("nothing to merge")
    first = reports[0]
    rows: dict[str, UsageRow] = {}
    for report in reports:
        for row in report.rows:
            into = rows.get(row.group)
            if into is None:
                rows[row.group] = row.model_copy(deep=True)
                continue
            for name in ("requests", "errors", "tokens_in", "tokens_out", "embeddings"):
                setattr(into, name, getattr(into, name) + getattr(row, name))
            into.latency_buckets = _add(into.latency_buckets, row.latency_buckets)
            into.ttft_buckets = _add(into.ttft_buckets, row.ttft_buckets)
    since = earliest(report.since for report in reports)
    seconds = covered_seconds(first.start, first.end, since)
    merged = [finish_row(row, seconds) for row in rows.values()]
    merged.sort(key=lambda r: (-r.requests, r.group))
    return first.model_copy(update={"rows": merged, "since": since, "covered_s": seconds})


def merge_series(series: Sequence[UsageSeries]) -> UsageSeries:
    if not series:
        raise ValueError("nothing to merge")
    points: dict[float, SeriesPoint] = {}
    for one in series:
        for point in one.points:
            into = points.get(point.t)
            if into is None:
                points[point.t] = point.model_copy()
                continue
            for name in ("requests", "errors", "tokens_in", "tokens_out", "embeddings",
                         "latency_sum_ms", "ttft_sum_ms", "ttft_count"):  # fmt: skip
                setattr(into, name, getattr(into, name) + getattr(point, name))
    for point in points.values():
        point.latency_avg_ms = (
            round(point.latency_sum_ms / point.requests, 3) if point.requests else None
        )
        point.ttft_avg_ms = (
            round(point.ttft_sum_ms / point.ttft_count, 3) if point.ttft_count else None
        )
    return series[0].model_copy(
        update={
            "points": [points[t] for t in sorted(points)],
            "since": earliest(one.since for one in series),
        }
    )
