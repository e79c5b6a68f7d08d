"""The usage ledger on the wire: `GET /api/history/jobs[/{id}]`, `/usage`, `/series`.

Times are epoch seconds (float) so pages from several replicas merge by plain comparison;
durations are milliseconds. Usage rows carry their latency / TTFT histogram counts
(`buckets_ms` gives the upper bounds) so rows from several ledgers can be summed and their
percentiles recomputed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gatewaytui.schema.wire import WireModel

Outcome = Literal[
    "ok",
    "cancelled",
    "client_gone",
    "timeout",
    "queue_timeout",
    "no_capacity",
    "rejected",
    "upstream_error",
    "bad_request",
    "error",
]
GroupBy = Literal["model", "key", "worker", "backend"]
WINDOWS: dict[str, float] = {"15m": 900.0, "1h": 3600.0, "24h": 86400.0, "7d": 604800.0}


class HistoryJob(WireModel):
    """One ended request (chat, streamed chat, embeddings or an MCP call)."""

    id: str
    kind: str
    model: str | None = None  # for an MCP call: the method (and tool / resource)
    key: str | None = None  # the API key's name, never the key
    client: str | None = None
    worker: str | None = None  # or the MCP client (relay) id
    backend: str | None = None
    replica: str | None = None
    requested_at: float
    started_at: float | None = None
    ended_at: float
    queue_ms: float | None = None
    ttft_ms: float | None = None
    duration_ms: float | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    embeddings: int = 0
    outcome: str
    status: int | None = None
    error: str | None = None
    stream: bool = False
    attempts: int = 1
    seq: int | None = None  # its place in its replica's ledger (what page cursors are made of)


class FleetCoverage(WireModel):
    """Which replicas an answer covers. A single node leaves these empty; a fleet replica
    lists who answered, and a replica that did not answer in time makes the answer
    `partial` (its id in `missing_replicas`, why in `missing_reasons`)."""

    replicas: list[str] = Field(default_factory=list)
    partial: bool = False
    missing_replicas: list[str] = Field(default_factory=list)
    missing_reasons: dict[str, str] = Field(default_factory=dict)


class HistoryJobsPage(FleetCoverage):
    jobs: list[HistoryJob] = Field(default_factory=list)
    next_cursor: str | None = None  # pass as `cursor` for the next (older) page
    ledger: dict[str, object] = Field(default_factory=dict)  # the ledger's status


class UsageRow(WireModel):
    group: str  # the model, key name, worker or backend ('' when none)
    requests: int = 0
    errors: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    embeddings: int = 0
    request_rate: float = 0.0  # per second over the report's covered_s
    error_rate: float = 0.0  # errors / requests
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    ttft_p50_ms: float | None = None
    ttft_p95_ms: float | None = None
    latency_buckets: list[int] = Field(default_factory=list)
    ttft_buckets: list[int] = Field(default_factory=list)


class UsageReport(FleetCoverage):
    group_by: GroupBy
    window: str
    start: float
    end: float
    # Since when the ledger(s) record (None: unknown). Rates are per second over
    # `covered_s` = min(window, end - since): a ledger 2 minutes old has 2 minutes of
    # traffic to spread, not 24 hours.
    since: float | None = None
    covered_s: float | None = None
    buckets_ms: list[float] = Field(default_factory=list)
    rows: list[UsageRow] = Field(default_factory=list)


class SeriesPoint(WireModel):
    t: float  # the minute's (or hour's) start, epoch seconds
    requests: int = 0
    errors: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    embeddings: int = 0
    latency_avg_ms: float | None = None
    ttft_avg_ms: float | None = None
    latency_sum_ms: float = 0.0  # the sums behind the averages, so replicas' points add up
    ttft_sum_ms: float = 0.0
    ttft_count: int = 0


class UsageSeries(FleetCoverage):
    window: str
    start: float
    end: float
    since: float | None = None  # since when the ledger(s) record (None: unknown)
    step_s: int = 60  # 3600 (hourly points) for windows over 6 h
    points: list[SeriesPoint] = Field(default_factory=list)


class SnapshotHistory(WireModel):
    """Recent history saved with a snapshot (`S` in the panel), for the History and Usage
    views of `gatewaytui open`: the newest ended jobs, usage over one window by each
    grouping, and that window's series, as the gateway answered when the file was saved."""

    saved_at: float  # epoch seconds
    window: str = "1h"
    jobs: list[HistoryJob] = Field(default_factory=list)
    usage: list[UsageReport] = Field(default_factory=list)  # one per group_by
    series: UsageSeries | None = None
