"""The usage ledger's reads (`/api/history/*`, viewer role) as `GatewayClient.history`.

Kept apart from `GatewayClient` so that class stays about the live gateway; the answers are
the wire models of `schema.history` (validated; a reply of another shape is an ActionError).
"""

from __future__ import annotations

import time
from typing import Any, Protocol, TypeVar, get_args
from urllib.parse import quote, urlencode

import httpx
from pydantic import BaseModel

from gatewaytui.schema.history import (
    GroupBy,
    HistoryJob,
    HistoryJobsPage,
    SnapshotHistory,
    UsageReport,
    UsageSeries,
)

M = TypeVar("M", bound=BaseModel)


class Requests(Protocol):
    """What the history reads need of the operator API client (`http.GatewayClient`): typed
    here, so this module does not import that one (which returns a `HistoryClient`)."""

    async def _request(self, method: str, path: str) -> httpx.Response: ...

    def _parsed(self, response: httpx.Response, model: type[M], what: str) -> M: ...


def _query(params: dict[str, Any]) -> str:
    given = {k: v for k, v in params.items() if v not in (None, "")}
    return f"?{urlencode(given)}" if given else ""


class HistoryClient:
    def __init__(self, client: Requests) -> None:
        self._client = client

    async def jobs(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        outcome: str | None = None,
        model: str | None = None,
        key: str | None = None,
        worker: str | None = None,
        text: str | None = None,
    ) -> HistoryJobsPage:
        """Ended jobs, newest first; pass `next_cursor` back as `cursor` for older ones."""
        query = _query(
            {"limit": limit, "cursor": cursor, "outcome": outcome, "model": model,
             "key": key, "worker": worker, "q": text}
        )  # fmt: skip
        return await self._get(f"/api/history/jobs{query}", HistoryJobsPage, "a page of jobs")

    async def job(self, job_id: str) -> HistoryJob:
        """One ended job (ActionError 404 when the ledger has none by that id)."""
        path = f"/api/history/jobs/{quote(job_id, safe='')}"
        return await self._get(path, HistoryJob, "an ended job")

    async def usage(
        self, group_by: str = "model", window: str = "1h", **filters: str | None
    ) -> UsageReport:
        """Requests, errors, tokens, p50/p95 latency and TTFT per group over a window."""
        query = _query({"group_by": group_by, "window": window, **filters})
        return await self._get(f"/api/history/usage{query}", UsageReport, "a usage report")

    async def series(self, window: str = "1h", **filters: str | None) -> UsageSeries:
        """Per-minute points over a window (minutes without traffic are absent)."""
        query = _query({"window": window, **filters})
        return await self._get(f"/api/history/series{query}", UsageSeries, "a usage series")

    async def _get(self, path: str, model: type[M], what: str) -> M:
        client = self._client
        return client._parsed(await client._request("GET", path), model, what)

    async def for_snapshot(self, window: str = "1h", limit: int = 500) -> SnapshotHistory:
        """The recent history a saved snapshot carries: the newest `limit` ended jobs, usage
        over `window` by every grouping, and that window's series."""
        page = await self.jobs(limit=limit)
        usage = [await self.usage(group, window) for group in get_args(GroupBy)]
        series = await self.series(window)
        return SnapshotHistory(
            saved_at=time.time(), window=window, jobs=page.jobs, usage=usage, series=series
        )
