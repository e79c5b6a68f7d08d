"""Fleet-wide history: each replica keeps its own ledger, and the history routes on any
replica answer for the whole fleet by asking the other live replicas (over HTTP, at their
`advertise_url`, with the caller's own operator token) and merging (`history.merge`).

A query from another replica carries `X-Gatewaytui-Forwarded-By` and is answered from the
local ledger only (no recursion). A replica that does not answer within
`cluster.command_timeout` (or answers with an error) makes the answer `partial`, with its id
in `missing_replicas` and why in `missing_reasons`: the merged answer is still served.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from gatewaytui.gateway.cluster.forward import FORWARDED_BY
from gatewaytui.gateway.history.merge import FleetCursor, merge_jobs, merge_series, merge_usage
from gatewaytui.gateway.jobs import GatewayError
from gatewaytui.schema.history import (
    FleetCoverage,
    HistoryJob,
    HistoryJobsPage,
    UsageReport,
    UsageSeries,
)

if TYPE_CHECKING:
    from gatewaytui.gateway.cluster.host import FleetNode

log = logging.getLogger("gatewaytui.gateway.cluster")
M = TypeVar("M", bound=BaseModel)
C = TypeVar("C", bound=FleetCoverage)
Params = dict[str, Any]
_CLIENT_ERRORS = (400, 422)  # a bad parameter is the caller's fault: not a missing replica


class Answers(dict[str, Any]):
    """What each replica answered (by id), and why the others did not (`missing`)."""

    def __init__(self) -> None:
        super().__init__()
        self.missing: dict[str, str] = {}
        self.local_error: GatewayError | None = None  # why this replica's ledger did not

    def cover(self, answer: C) -> C:
        answer.replicas = sorted(self)
        answer.missing_replicas = sorted(self.missing)
        answer.missing_reasons = dict(sorted(self.missing.items()))
        answer.partial = bool(self.missing)
        return answer


class FleetHistory:
    def __init__(self, node: FleetNode) -> None:
        self.node = node
        self._client: httpx.AsyncClient | None = None

    @property
    def timeout(self) -> float:
        return float(self.node.config.cluster_command_timeout)

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            timeout = httpx.Timeout(self.timeout, connect=min(self.timeout, 2.0))
            self._client = httpx.AsyncClient(timeout=timeout)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # ---- asking --------------------------------------------------------------------------

    async def _ask_one(
        self, replica: str, path: str, params: Params, auth: str | None, model: type[M]
    ) -> tuple[M | None, str | None, int]:
        """(answer, None, 200) or (None, why not, status: 0 when it did not answer)."""
        registration = self.node.replicas.get(replica) or {}
        base = str(registration.get("advertise_url") or "").rstrip("/")
        if not base:
            return None, "no advertise_url in its registration", 0
        headers = {FORWARDED_BY: self.node.id}
        if auth:
            headers["authorization"] = auth
        given = {k: v for k, v in params.items() if v is not None}
        try:
            reply = await asyncio.wait_for(
                self.client().get(base + path, params=given, headers=headers), self.timeout
            )
        except TimeoutError:
            return None, f"no answer within {self.timeout:g}s", 0
        except httpx.HTTPError as exc:
            return None, f"unreachable ({type(exc).__name__})", 0
        if reply.status_code != 200:
            return None, f"HTTP {reply.status_code}: {_message(reply)}", reply.status_code
        try:
            return model.model_validate_json(reply.content), None, 200
        except ValidationError:
            return None, "answered something that is not a history answer", reply.status_code

    async def _gather(
        self,
        request: Request,
        path: str,
        model: type[M],
        local: Awaitable[M],
        params: Callable[[str], Params | None],
    ) -> Answers:
        """This replica's answer and every other live replica's, asked at once. `params`
        gives each replica's query (None: do not ask it)."""
        auth = request.headers.get("authorization")
        others = {r: params(r) for r in sorted(self.node.replicas)}
        asked = {r: p for r, p in others.items() if p is not None}
        remote = asyncio.gather(*(self._ask_one(r, path, p, auth, model) for r, p in asked.items()))
        answers = Answers()
        here = self.node.id
        try:
            answers[here] = await local
        except GatewayError as exc:
            if exc.status in _CLIENT_ERRORS:
                remote.cancel()
                await asyncio.gather(remote, return_exceptions=True)
                raise
            answers.missing[here] = exc.message
            answers.local_error = exc
        for replica, (answer, why, _) in zip(asked, await remote, strict=True):
            if answer is not None:
                answers[replica] = answer
            else:
                answers.missing[replica] = why or "no answer"
                log.warning("history: replica %s did not answer (%s)", replica, why)
        if not answers and answers.local_error is not None:
            raise answers.local_error  # nobody answered: say why this replica cannot
        return answers

    # ---- the routes ----------------------------------------------------------------------

    async def jobs(
        self,
        request: Request,
        local: Callable[[str | None], Awaitable[HistoryJobsPage]],
        params: Params,
        limit: int,
        cursor: str | None,
    ) -> HistoryJobsPage:
        try:
            where = FleetCursor.parse(cursor)
        except ValueError as exc:
            raise GatewayError(str(exc), status=400, code="invalid_request") from None
        asked: dict[str, str] = {}

        def replica_params(replica: str) -> Params | None:
            mine = where.for_replica(replica)
            if mine is None:
                return None
            asked[replica] = mine
            return {**params, "limit": limit, "cursor": mine or None}

        here = where.for_replica(self.node.id)
        if here is not None:
            asked[self.node.id] = here
        local_page = local(here or None) if here is not None else _nothing()
        answers = await self._gather(
            request, "/api/history/jobs", HistoryJobsPage, local_page, replica_params
        )
        pages = {r: p for r, p in answers.items() if r in asked}
        merged = merge_jobs(pages, limit, where, asked)
        own = answers.get(self.node.id)
        if own is not None:
            merged.ledger = own.ledger
        return answers.cover(merged)

    async def job(
        self, request: Request, job_id: str, local: Awaitable[HistoryJob | None]
    ) -> HistoryJob | None:
        """This replica's record of the job, else the first replica's that has one (asked
        also when this replica's own history is off or unreadable)."""
        missing = []
        try:
            found = await local
        except GatewayError as exc:  # history off here, or its file unreadable
            found = None
            missing.append(f"{self.node.id}: {exc.message}")
        if found is not None:
            return found
        auth = request.headers.get("authorization")
        path = f"/api/history/jobs/{job_id}"
        replies = await asyncio.gather(
            *(self._ask_one(r, path, {}, auth, HistoryJob) for r in sorted(self.node.replicas))
        )
        for replica, (answer, _, status) in zip(sorted(self.node.replicas), replies, strict=True):
            if answer is not None:
                return answer
            if status != 404:
                missing.append(replica)
        if missing:
            raise GatewayError(
                f"no ended job with id {job_id!r} in the history of the replicas that answered "
                f"(no answer from {', '.join(missing)})",
                status=404,
            )
        return None

    async def usage(
        self, request: Request, local: Awaitable[UsageReport], params: Params
    ) -> UsageReport:
        answers = await self._gather(
            request, "/api/history/usage", UsageReport, local, lambda _: params
        )
        return answers.cover(merge_usage(list(answers.values())))

    async def series(
        self, request: Request, local: Awaitable[UsageSeries], params: Params
    ) -> UsageSeries:
        answers = await self._gather(
            request, "/api/history/series", UsageSeries, local, lambda _: params
        )
        return answers.cover(merge_series(list(answers.values())))


async def _nothing() -> HistoryJobsPage:
    return HistoryJobsPage()


def _message(reply: httpx.Response) -> str:
    try:
        body: Mapping[str, Any] = reply.json()
        error = body.get("error") or {}
        return str(error.get("message") or body.get("detail") or reply.text)[:200]
    except (ValueError, AttributeError):
        return reply.text[:200]
