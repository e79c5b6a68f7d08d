"""The ledger's answers as wire models (what one replica knows; `merge` joins replicas)."""

from __future__ import annotations

import time
from typing import Any

from gatewaytui.gateway.history import store
from gatewaytui.gateway.history.ledger import HistoryUnavailableError, Ledger
from gatewaytui.gateway.history.merge import covered_seconds, finish_row
from gatewaytui.gateway.history.record import BUCKETS_MS
from gatewaytui.schema.durations import parse_duration
from gatewaytui.schema.history import (
    WINDOWS,
    HistoryJob,
    HistoryJobsPage,
    SeriesPoint,
    UsageReport,
    UsageRow,
    UsageSeries,
)

MAX_LIMIT = 500
MAX_WINDOW_S = 31 * 86400.0
HOURLY_OVER_S = 6 * 3600.0  # longer windows get hourly series points


class BadQueryError(ValueError):
    """A query parameter out of shape (the routes answer 400 with the message)."""


def window_seconds(window: str) -> float:
    """`15m`, `1h`, `24h`, `7d` or any duration up to 31 days."""
    if window in WINDOWS:
        return WINDOWS[window]
    try:
        seconds = float(parse_duration(window))
    except ValueError:
        raise BadQueryError(
            f"window: expected one of {', '.join(WINDOWS)} or a duration like 90m, got {window!r}"
        ) from None
    if not 60 <= seconds <= MAX_WINDOW_S:
        raise BadQueryError("window: must be between 1m and 31d")
    return seconds


def parse_cursor(cursor: str | None) -> tuple[int | None, float | None]:
    """A cursor is `s<seq>` (this ledger) or `t<ended_at>` (a merged, fleet-wide page)."""
    if not cursor:
        return None, None
    try:
        if cursor.startswith("s"):
            return int(cursor[1:]), None
        if cursor.startswith("t"):
            return None, float(cursor[1:])
    except ValueError:
        pass
    raise BadQueryError("cursor: not a cursor this gateway returned")


def _job(row: dict[str, Any]) -> HistoryJob:
    return HistoryJob.model_validate(row)


async def jobs_page(
    ledger: Ledger,
    *,
    limit: int = 50,
    cursor: str | None = None,
    text: str | None = None,
    outcome: str | None = None,
    model: str | None = None,
    key: str | None = None,
    worker: str | None = None,
) -> HistoryJobsPage:
    if not 1 <= limit <= MAX_LIMIT:
        raise BadQueryError(f"limit: must be 1..{MAX_LIMIT}")
    before, until = parse_cursor(cursor)

    def query(conn: Any) -> tuple[list[dict[str, Any]], int | None]:
        return store.list_jobs(
            conn, limit=limit, before=before, until=until, text=text,
            outcome=outcome, model=model, key=key, worker=worker,
        )  # fmt: skip

    rows, next_seq = await ledger.read(query)
    return HistoryJobsPage(
        jobs=[_job(r) for r in rows],
        next_cursor=None if next_seq is None else f"s{next_seq}",
        ledger=ledger.status(),
    )


async def one_job(ledger: Ledger, job_id: str) -> HistoryJob | None:
    row = await ledger.read(lambda conn: store.get_job(conn, job_id))
    return None if row is None else _job(row)


def _span(window: str, end: float | None) -> tuple[float, float]:
    seconds = window_seconds(window)
    end = time.time() if end is None else end
    return end - seconds, end


def _since(ledger: Ledger, conn: Any) -> float | None:
    """Since when the ledger holds data: its creation, or the age limit's cutoff if later."""
    since = store.recording_since(conn)
    max_age = ledger.settings.max_age_s
    if since is not None and max_age > 0:
        since = max(since, time.time() - max_age)
    return since


async def usage_report(
    ledger: Ledger,
    group_by: str,
    window: str,
    *,
    end: float | None = None,
    where: store.UsageFilter | None = None,
) -> UsageReport:
    if group_by not in store.GROUPS:
        raise BadQueryError(f"group_by: expected one of {', '.join(store.GROUPS)}")
    start, end = _span(window, end)

    def query(conn: Any) -> tuple[list[dict[str, Any]], float | None]:
        return store.usage(conn, group_by, start, end, where), _since(ledger, conn)

    rows, since = await ledger.read(query)
    covered = covered_seconds(start, end, since)
    out = [
        finish_row(
            UsageRow(
                group=r["group"],
                requests=r["requests"],
                errors=r["errors"],
                tokens_in=r["tokens_in"],
                tokens_out=r["tokens_out"],
                embeddings=r["embeddings"],
                latency_buckets=r["latency_buckets"],
                ttft_buckets=r["ttft_buckets"],
            ),
            covered,
        )
        for r in rows
    ]
    out.sort(key=lambda r: (-r.requests, r.group))
    return UsageReport(
        group_by=group_by,  # type: ignore[arg-type]  # checked above
        window=window,
        start=start,
        end=end,
        since=since,
        covered_s=covered,
        buckets_ms=list(BUCKETS_MS),
        rows=out,
    )


async def usage_series(
    ledger: Ledger,
    window: str,
    *,
    end: float | None = None,
    where: store.UsageFilter | None = None,
) -> UsageSeries:
    start, end = _span(window, end)
    hourly = end - start > HOURLY_OVER_S  # a 7-day sparkline needs no 10,080 points

    def query(conn: Any) -> tuple[list[dict[str, Any]], float | None]:
        return store.series(conn, start, end, where, hourly=hourly), _since(ledger, conn)

    rows, since = await ledger.read(query)
    points = [
        SeriesPoint(
            t=float(r["minute"] * 60),
            requests=r["requests"],
            errors=r["errors"],
            tokens_in=r["tokens_in"],
            tokens_out=r["tokens_out"],
            embeddings=r["embeddings"],
            latency_sum_ms=float(r["dur_sum"]),
            ttft_sum_ms=float(r["ttft_sum"]),
            ttft_count=r["ttft_n"],
            latency_avg_ms=round(r["dur_sum"] / r["requests"], 3) if r["requests"] else None,
            ttft_avg_ms=round(r["ttft_sum"] / r["ttft_n"], 3) if r["ttft_n"] else None,
        )
        for r in rows
    ]
    return UsageSeries(
        window=window,
        start=start,
        end=end,
        since=since,
        step_s=3600 if hourly else 60,
        points=points,
    )


__all__ = [
    "BadQueryError",
    "HistoryUnavailableError",
    "covered_seconds",
    "jobs_page",
    "one_job",
    "usage_report",
    "usage_series",
    "window_seconds",
]
