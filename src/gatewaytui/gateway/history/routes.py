"""`/api/history/*`: the usage ledger, read with a viewer (or operator) token.

404 when history is off (`history.enabled=false`), 503 with the reason when the file cannot
be read, 400 for a bad parameter. Answers are what this replica's ledger holds; the fleet
may wrap these handlers to ask the other replicas and merge (see `history.merge`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Query, Request

from gatewaytui.gateway.history import queries
from gatewaytui.gateway.history.ledger import HistoryUnavailableError, Ledger
from gatewaytui.gateway.history.store import UsageFilter
from gatewaytui.gateway.jobs import GatewayError
from gatewaytui.schema.history import HistoryJob, HistoryJobsPage, UsageReport, UsageSeries

TAGS: list[str | Any] = ["history"]


def _ledger(gateway: Any) -> Ledger:
    ledger: Ledger | None = gateway.history.ledger
    if ledger is None:
        raise GatewayError("history is disabled (history.enabled=false)", status=404)
    return ledger


async def _run(call: Any) -> Any:
    try:
        return await call
    except queries.BadQueryError as exc:
        raise GatewayError(str(exc), status=400, code="invalid_request") from None
    except HistoryUnavailableError as exc:
        raise GatewayError(str(exc), status=503, code="history_unavailable") from None


def add_history_routes(app: FastAPI, gateway: Any, require_role: Callable[..., Any]) -> None:
    """Install the history routes; `require_role(headers, "viewer")` guards them."""

    @app.get("/api/history/jobs", response_model=HistoryJobsPage, tags=TAGS)
    async def history_jobs(
        request: Request,
        outcome: str | None = None,
        model: str | None = None,
        key: str | None = Query(None, description="the API key's name"),
        worker: str | None = None,
        q: str | None = Query(None, description="text in id, model, key, worker, client, error"),
        limit: int = 50,
        cursor: str | None = Query(None, description="next_cursor of the previous page"),
    ) -> HistoryJobsPage:
        """Ended jobs, newest first."""
        require_role(request.headers, "viewer")
        page: HistoryJobsPage = await _run(
            queries.jobs_page(
                _ledger(gateway),
                limit=limit,
                cursor=cursor,
                text=q,
                outcome=outcome,
                model=model,
                key=key,
                worker=worker,
            )
        )
        return page

    @app.get("/api/history/jobs/{job_id}", response_model=HistoryJob, tags=TAGS)
    async def history_job(job_id: str, request: Request) -> HistoryJob:
        """One ended job by id (404 if the ledger has none by that id)."""
        require_role(request.headers, "viewer")
        job: HistoryJob | None = await _run(queries.one_job(_ledger(gateway), job_id))
        if job is None:
            raise GatewayError(f"no ended job with id {job_id!r} in the history", status=404)
        return job

    @app.get("/api/history/usage", response_model=UsageReport, tags=TAGS)
    async def history_usage(
        request: Request,
        group_by: str = Query("model", description="model, key, worker or backend"),
        window: str = Query("1h", description="15m, 1h, 24h, 7d or a duration"),
        end: float | None = Query(None, description="window end, epoch seconds (default now)"),
        model: str | None = None,
        key: str | None = None,
        worker: str | None = None,
        backend: str | None = None,
    ) -> UsageReport:
        """Requests, errors, tokens and latency / TTFT percentiles per group over a window."""
        require_role(request.headers, "viewer")
        report: UsageReport = await _run(
            queries.usage_report(
                _ledger(gateway),
                group_by,
                window,
                end=end,
                where=UsageFilter(model, key, worker, backend),
            )
        )
        return report

    @app.get("/api/history/series", response_model=UsageSeries, tags=TAGS)
    async def history_series(
        request: Request,
        window: str = Query("1h", description="15m, 1h, 24h, 7d or a duration"),
        end: float | None = None,
        model: str | None = None,
        key: str | None = None,
        worker: str | None = None,
        backend: str | None = None,
    ) -> UsageSeries:
        """Per-minute points (minutes without traffic are absent) for sparklines."""
        require_role(request.headers, "viewer")
        series: UsageSeries = await _run(
            queries.usage_series(
                _ledger(gateway), window, end=end, where=UsageFilter(model, key, worker, backend)
            )
        )
        return series
