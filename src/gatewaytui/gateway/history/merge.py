"""Merging answers from several ledgers (one per fleet replica) into one.

The fleet asks the other replicas for the same route and passes their answers here with
its own: pages merge newest-first, usage rows add up (histograms too, then percentiles are
recomputed from the summed buckets), series points add up per minute.
"""

from __future__ import annotations

from collections.abc import Sequence

from gatewaytui.gateway.history.store import percentile
from gatewaytui.schema.history import (
    HistoryJob,
    HistoryJobsPage,
    SeriesPoint,
    UsageReport,
    UsageRow,
    UsageSeries,
)


def merge_jobs(pages: Sequence[HistoryJobsPage], limit: int) -> HistoryJobsPage:
    """Newest first across replicas, at most `limit`. The cursor of a merged page is the
    `ended_at` of its last job (`before=` on the next request), since per-ledger sequence
    cursors do not compare across replicas."""
    jobs: list[HistoryJob] = sorted(
        (job for page in pages for job in page.jobs), key=lambda j: j.ended_at, reverse=True
    )
    more = len(jobs) > limit or any(page.next_cursor for page in pages)
    jobs = jobs[:limit]
    cursor = f"t{jobs[-1].ended_at!r}" if more and jobs else None
    return HistoryJobsPage(jobs=jobs, next_cursor=cursor)


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
    seconds = first.end - first.start
    merged = [finish_row(row, seconds) for row in rows.values()]
    merged.sort(key=lambda r: (-r.requests, r.group))
    return first.model_copy(update={"rows": merged})


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
    return series[0].model_copy(update={"points": [points[t] for t in sorted(points)]})
