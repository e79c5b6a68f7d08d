"""`/api/history/*`: the usage ledger, read with a viewer (or operator) token.

404 when history is off (`history.enabled=false`), 503 with the reason when the file cannot
be read, 400 for a bad parameter. On a single node the answers are what its ledger holds; on
a fleet replica they cover the whole fleet (`cluster.history` asks the other replicas and
merges, unless the request itself comes from another replica).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Query, Request

from gatewaytui.gateway.cluster.forward import FORWARDED_BY
from gatewaytui.gateway.history import queries
from gatewaytui.gateway.history.ledger import HistoryUnavailableError, Ledger
from gatewaytui.gateway.history.store import UsageFilter
from gatewaytui.gateway.jobs import GatewayError
from gatewaytui.schema.history import HistoryJob, HistoryJobsPage, UsageReport, UsageSeries

if TYPE_CHECKING:
    from gatewaytui.gateway.cluster.history import FleetHistory

TAGS: list[str | Any] = ["history"]


def _ledger(gateway: Any) -> Ledger:
    ledger: Ledger | None = gateway.history.ledger
    if ledger is None:
        raise GatewayError("history is disabled (history.enabled=false)", status=404)
    return ledger


async def _run(make: Callable[[], Awaitable[Any]]) -> Any:
    """The query's answer, its errors as HTTP errors (made lazily, so that history being
    off is an error of this coroutine, which a fleet reports per replica)."""
    try:
        return await make()
    except queries.BadQueryError as exc:
        raise GatewayError(str(exc), status=400, code="invalid_request") from None
    except HistoryUnavailableError as exc:
        raise GatewayError(str(exc), status=503, code="history_unavailable") from None


def _fleet(gateway: Any, request: Request) -> FleetHistory | None:
    """The fleet's reader when this replica should answer for the whole fleet: clustered,
    and not itself asked by another replica (that one wants this ledger only)."""
    cluster = getattr(gateway, "cluster", None)
    if cluster is None or request.headers.get(FORWARDED_BY):
        return None
    fleet: FleetHistory = cluster.history
    return fleet


def add_history_routes(app: FastAPI, gateway: Any, require_role: Callable[..., Any]) -> None:
    """Install the history routes; `require_role(headers, "viewer")` guards them."""
    _add_jobs_route(app, gateway, require_role)
    _add_job_route(app, gateway, require_role)
    _add_usage_route(app, gateway, require_role)
    _add_series_route(app, gateway, require_role)


def _add_jobs_route(app: FastAPI, gateway: Any, require_role: Callable[..., Any]) -> None:
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
        """Ended jobs, newest first (in a fleet: every replica's, merged)."""
        require_role(request.headers, "viewer")
        filters = {"outcome": outcome, "model": model, "key": key, "worker": worker, "q": q}

        def local(at: str | None) -> Awaitable[HistoryJobsPage]:  # ask this ledger from `at`
            def query() -> Awaitable[HistoryJobsPage]:
                return queries.jobs_page(
                    _ledger(gateway), limit=limit, cursor=at, text=q, outcome=outcome,
                    model=model, key=key, worker=worker,
                )  # fmt: skip

            return _run(query)

        fleet = _fleet(gateway, request)
        if fleet is None:
            page: HistoryJobsPage = await local(cursor)
            return page
        return await fleet.jobs(request, local, filters, limit, cursor)


def _add_job_route(app: FastAPI, gateway: Any, require_role: Callable[..., Any]) -> None:
    @app.get("/api/history/jobs/{job_id}", response_model=HistoryJob, tags=TAGS)
    async def history_job(job_id: str, request: Request) -> HistoryJob:
        """One ended job by id (404 if no ledger has one by that id)."""
        require_role(request.headers, "viewer")
        local = _run(lambda: queries.one_job(_ledger(gateway), job_id))
        fleet = _fleet(gateway, request)
        job: HistoryJob | None = await (
            local if fleet is None else fleet.job(request, job_id, local)
        )
        if job is None:
            raise GatewayError(f"no ended job with id {job_id!r} in the history", status=404)
        return job


def _add_usage_route(app: FastAPI, gateway: Any, require_role: Callable[..., Any]) -> None:
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
        end = time.time() if end is None else end  # one window for every replica asked
        where = UsageFilter(model, key, worker, backend)
        local = _run(
            lambda: queries.usage_report(_ledger(gateway), group_by, window, end=end, where=where)
        )
        fleet = _fleet(gateway, request)
        if fleet is None:
            report: UsageReport = await local
            return report
        params = {"group_by": group_by, "window": window, "end": repr(end), **where.params()}
        return await fleet.usage(request, local, params)


def _add_series_route(app: FastAPI, gateway: Any, require_role: Callable[..., Any]) -> None:
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
        end = time.time() if end is None else end
        where = UsageFilter(model, key, worker, backend)
        local = _run(lambda: queries.usage_series(_ledger(gateway), window, end=end, where=where))
        fleet = _fleet(gateway, request)
        if fleet is None:
            series: UsageSeries = await local
            return series
        params = {"window": window, "end": repr(end), **where.params()}
        return await fleet.series(request, local, params)
