"""One ledger record per finished request, and how an ended job's outcome is named.

A record is a plain tuple in `COLUMNS` order: built on the event loop at job end (cheap, no
I/O) and written by the ledger's thread. Latency buckets are fixed so per-minute rollups
from any replica can be summed and percentiles read from the sums.
"""

from __future__ import annotations

import asyncio
import bisect
from typing import Any, get_args

from gatewaytui.gateway.jobs import WorkerJobError, WorkerLostError, new_job_id
from gatewaytui.schema.history import Outcome

# Upper bounds (ms) of the latency / TTFT histogram buckets; the last bucket is open.
BUCKETS_MS: tuple[float, ...] = (
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 60_000, 120_000,
)  # fmt: skip
N_BUCKETS = len(BUCKETS_MS) + 1

COLUMNS: tuple[str, ...] = (
    "id",
    "kind",
    "model",
    "key",
    "client",
    "worker",
    "backend",
    "replica",
    "requested_at",
    "started_at",
    "ended_at",
    "queue_ms",
    "ttft_ms",
    "duration_ms",
    "tokens_in",
    "tokens_out",
    "embeddings",
    "outcome",
    "status",
    "error",
    "stream",
    "attempts",
)
COL = {name: i for i, name in enumerate(COLUMNS)}

OUTCOMES: tuple[str, ...] = get_args(Outcome)  # the wire's list (schema.history), not a copy
# Error codes (GatewayError.code / MCP error codes) -> outcome.
_BY_CODE = {
    "queue_timeout": "queue_timeout",
    "queue_full": "no_capacity",
    "no_capacity": "no_capacity",
    "too_many_calls": "no_capacity",
    "server_draining": "rejected",
    "request_timeout": "timeout",
    "call_timeout": "timeout",
    "job_cancelled": "cancelled",
    "client_closed": "client_gone",
    "worker_lost": "upstream_error",
    "worker_error": "upstream_error",
    "relay_lost": "upstream_error",
    "invalid_request": "bad_request",
    "model_not_found": "bad_request",
}


def bucket_of(ms: float) -> int:
    """Index of the histogram bucket `ms` falls in."""
    return bisect.bisect_left(BUCKETS_MS, ms)


def outcome_of(exc: BaseException | None, ok: bool) -> tuple[str, int | None, str | None]:
    """(outcome, HTTP status, error message) of a request that ended with `exc` (or none)."""
    if ok:
        return "ok", 200, None
    if exc is None:
        return "error", None, "ended without a result"
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return "client_gone", 499, "client disconnected"
    code = getattr(exc, "code", None)
    status = getattr(exc, "status", None)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    outcome = _BY_CODE.get(code) if isinstance(code, str) else None
    if outcome is None and isinstance(exc, WorkerJobError | WorkerLostError):
        outcome = "upstream_error"  # whatever code the worker gave its error
    if outcome is None:
        if isinstance(status, int) and 400 <= status < 500:
            outcome = "bad_request"
        elif isinstance(status, int) and status in (502, 504):
            outcome = "upstream_error"
        else:
            outcome = "error"
    return outcome, status if isinstance(status, int) else 500, message[:1000]


def job_record(
    job: Any,
    *,
    ok: bool,
    exc: BaseException | None,
    key: str | None,
    replica: str | None,
    ended_at: float,
    duration_ms: float,
    embeddings: int,
) -> tuple[Any, ...]:
    """The record of an ended chat or embeddings job (see `COLUMNS`)."""
    outcome, status, error = outcome_of(exc, ok)
    ttft = job.first_token_ms
    return (
        job.id,
        job.kind,
        job.model,
        key,
        job.client,
        job.worker,
        job.backend,
        replica,
        job.started_at,
        job.dispatched_at,
        ended_at,
        round(job.queue_wait_s * 1000, 3),
        None if ttft is None else round(ttft, 3),
        round(duration_ms, 3),
        job.tokens_in,
        job.tokens_out,
        embeddings,
        outcome,
        status,
        error,
        1 if job.stream else 0,
        job.attempt,
    )


def refused_record(
    kind: str,
    model: str | None,
    stream: bool,
    client: str | None,
    key: str | None,
    exc: BaseException,
    *,
    replica: str | None,
    now: float,
) -> tuple[Any, ...]:
    """The record of a request refused before it became a job (no worker, no duration)."""
    outcome, status, error = outcome_of(exc, False)
    return (
        new_job_id(kind),
        kind,
        None if model is None else model[:200],
        key,
        client,
        None,
        None,
        replica,
        now,
        None,
        now,
        0.0,
        None,
        0.0,
        0,
        0,
        0,
        outcome,
        status,
        error,
        1 if stream else 0,
        0,
    )


def mcp_record(
    call: Any,
    *,
    error: str | None,
    cancelled: bool,
    replica: str | None,
    ended_at: float,
    duration_ms: float,
) -> tuple[Any, ...]:
    """The record of an ended MCP call through a relay (`model` holds the MCP method)."""
    if cancelled:
        outcome, status = "client_gone", 499
    elif error is None:
        outcome, status = "ok", 200
    else:
        lowered = error.lower()
        if "timed out" in lowered or "timeout" in lowered:
            outcome, status = "timeout", 504
        elif "lost" in lowered or "disconnect" in lowered:
            outcome, status = "upstream_error", 502
        else:
            outcome, status = "upstream_error", 502
    method = call.method + (f" {call.target}" if call.target else "")
    return (
        call.id,
        "mcp",
        method[:200],
        getattr(call, "key", None),
        call.client,
        call.relay.id,
        None,
        replica,
        call.started_at,
        call.started_at,
        ended_at,
        0.0,
        None,
        round(duration_ms, 3),
        0,
        0,
        0,
        outcome,
        status,
        None if error is None else error[:1000],
        1 if call.stream else 0,
        1,
    )
