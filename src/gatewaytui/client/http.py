"""`GatewayClient`: the gateway's operator HTTP API (reads and actions) over httpx.

Every action returns the gateway's `ActionResult` or raises `ActionError` with the HTTP
status and the gateway's own message ("no worker with id 'x'", "this token has the viewer
role; ..."), and a gateway that cannot be reached raises `GatewayUnreachable` with a short
reason ("connection refused"). The token travels only in the `Authorization` header; it is
never part of a URL, a message or a repr.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
from pydantic import BaseModel, ValidationError

import gatewaytui
from gatewaytui.client.errors import (
    ActionError,
    GatewayUnreachable,
    describe_exception,
    error_detail_from_body,
    error_message_from_body,
)
from gatewaytui.client.history import HistoryClient
from gatewaytui.schema.api import (
    ActionResult,
    ServerDrainRequest,
    ServerUndrainRequest,
    WorkerLogs,
)
from gatewaytui.schema.backends import ProbeResult
from gatewaytui.schema.state import BackendSnapshot, GatewayState, PluginState
from gatewaytui.shared.lifecycle import Started
from gatewaytui.shared.sse import sse_data

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
M = TypeVar("M", bound=BaseModel)
FleetScope = Literal["replica", "fleet"]
"""A server drain's reach in a fleet: one replica, or every live one."""


def normalise_url(url: str) -> str:
    """`http(s)://host:port[/prefix]` without a trailing slash; a bare `host:port` gets http.

    `ws://` and `wss://` are accepted too and mapped to their HTTP schemes, so a context can
    name the gateway either way.
    """
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme.lower(), parts.scheme.lower())
    if scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not a gateway URL: {url!r} (expected http://host:port)")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def websocket_url(base_url: str, path: str) -> str:
    """The ws(s):// URL of `path` on the gateway at `base_url`."""
    parts = urlsplit(normalise_url(base_url))
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path + path, "", ""))


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


@dataclass(frozen=True, slots=True)
class Health:
    """`/healthz` and `/readyz` together: is it up, and can it take jobs (and if not, why)."""

    alive: bool
    version: str | None
    ready: bool
    status: str
    reason: str | None


class GatewayClient(Started):
    """Async client of one gateway's operator API. Use as `async with`, or call `aclose()`.

    `transport` lets tests swap the network for an `httpx.MockTransport`.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = normalise_url(url)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={
                **auth_headers(token),
                "User-Agent": f"gatewaytui/{gatewaytui.__version__}",
                "Accept": "application/json",
            },
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"<GatewayClient {self.base_url}>"

    async def close(self) -> None:
        """`aclose` (httpx's name): what `async with` calls on the way out."""
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- worker logs ------------------------------------------------------------------------

    async def worker_logs(self, worker_id: str, tail: int = 200) -> WorkerLogs:
        """`GET /api/workers/{id}/logs`: the worker's last `tail` log lines. A worker that
        does not support logs raises ActionError with status 501 (code logs_unsupported)."""
        response = await self._request(
            "GET", f"/api/workers/{_segment(worker_id)}/logs?tail={int(tail)}"
        )
        return self._parsed(response, WorkerLogs, "worker logs")

    async def follow_worker_logs(
        self, worker_id: str, tail: int = 200
    ) -> AsyncIterator[WorkerLogs | str]:
        """Like `kubectl logs -f`: yields WorkerLogs batches (the last `tail` lines first,
        then new ones), and finally the reason as a str when the gateway ends the stream
        (the worker left). Raises ActionError before the first batch if refused."""
        path = f"/api/workers/{_segment(worker_id)}/logs?tail={int(tail)}&follow=true"
        timeout = httpx.Timeout(10.0, read=None)  # a quiet worker is not a dead stream
        try:
            async with self._http.stream(
                "GET", path, headers={"Accept": "text/event-stream"}, timeout=timeout
            ) as response:
                if not response.is_success:
                    await response.aread()
                    detail = error_detail_from_body(response.content)
                    raise ActionError(
                        response.status_code,
                        error_message_from_body(
                            response.status_code, response.content, response.reason_phrase
                        ),
                        type=detail.get("type"),
                        code=detail.get("code"),
                        details=detail,
                    )
                async for data in sse_data(response.aiter_lines()):
                    try:
                        body = json.loads(data)
                    except ValueError:
                        continue
                    if isinstance(body, dict) and "reason" in body and "lines" not in body:
                        yield str(body["reason"])
                        return
                    yield WorkerLogs.model_validate({"worker_id": worker_id, **body})
        except httpx.HTTPError as exc:
            raise GatewayUnreachable(describe_exception(exc)) from None

    # -- plumbing ---------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        ok_statuses: tuple[int, ...] = (),
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        try:
            response = await self._http.request(method, path, json=json, headers=headers)
        except httpx.HTTPError as exc:
            raise GatewayUnreachable(describe_exception(exc)) from None
        if response.is_success or response.status_code in ok_statuses:
            return response
        detail = error_detail_from_body(response.content)
        raise ActionError(
            response.status_code,
            error_message_from_body(response.status_code, response.content, response.reason_phrase),
            type=detail.get("type"),
            code=detail.get("code"),
            details=detail,
        )

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ActionError(
                response.status_code, "the gateway answered with something that is not JSON"
            ) from None

    async def _action(self, path: str, body: dict[str, Any] | None = None) -> ActionResult:
        response = await self._request("POST", path, json=body)
        try:
            return ActionResult.model_validate(self._json(response))
        except ValidationError:
            raise ActionError(
                response.status_code, "the gateway's reply is not an action result"
            ) from None

    # -- reads ------------------------------------------------------------------------------

    @property
    def history(self) -> HistoryClient:
        """The usage ledger: `await client.history.jobs()`, `.job(id)`, `.usage()`, `.series()`."""
        return HistoryClient(self)

    async def state_json(self) -> dict[str, Any]:
        """`GET /api/state` as the raw dict (same shape as the store's `to_state_dict()`)."""
        data = self._json(await self._request("GET", "/api/state"))
        if not isinstance(data, dict):
            raise ActionError(200, "GET /api/state did not return an object")
        return data

    async def state(self) -> GatewayState:
        """`GET /api/state`, validated."""
        return GatewayState.model_validate(await self.state_json())

    async def whoami(self) -> str:
        """`GET /api/whoami`: the role this token grants, "viewer" or "operator"."""
        data = self._json(await self._request("GET", "/api/whoami"))
        role = data.get("role") if isinstance(data, dict) else None
        if role not in ("viewer", "operator"):
            raise ActionError(200, f"GET /api/whoami returned an unknown role: {role!r}")
        return str(role)

    async def plugins(self) -> list[PluginState]:
        """`GET /api/plugins`: every option with its effective value and source."""
        data = self._json(await self._request("GET", "/api/plugins"))
        return [PluginState.model_validate(p) for p in data]

    async def health(self) -> Health:
        """`/healthz` then `/readyz` (a 503 from readyz is an answer, not an error)."""
        alive = self._json(await self._request("GET", "/healthz"))
        ready_response = await self._request("GET", "/readyz", ok_statuses=(503,))
        ready = self._json(ready_response)
        return Health(
            alive=alive.get("status") == "ok",
            version=alive.get("version"),
            ready=ready_response.status_code == 200,
            status=str(ready.get("status", "unknown")),
            reason=ready.get("reason"),
        )

    # -- actions (operator role) ------------------------------------------------------------

    async def drain_worker(self, worker_id: str) -> ActionResult:
        """Stop sending new jobs to a worker; its in-flight jobs finish."""
        return await self._action(f"/api/workers/{_segment(worker_id)}/drain")

    async def undrain_worker(self, worker_id: str) -> ActionResult:
        """Put a drained worker back in rotation."""
        return await self._action(f"/api/workers/{_segment(worker_id)}/undrain")

    async def cancel_job(self, job_id: str) -> ActionResult:
        """Cancel an in-flight job (its client gets an error, its worker a cancel frame)."""
        return await self._action(f"/api/jobs/{_segment(job_id)}/cancel")

    async def drain_server(
        self,
        timeout_s: float | None = None,
        *,
        exit_when_done: bool = False,
        scope: FleetScope = "replica",
        replica: str | None = None,
    ) -> ActionResult:
        """Refuse new requests and let in-flight jobs finish (up to `timeout_s`). In a fleet:
        `scope="fleet"` drains every live replica, `replica` names another one than this."""
        body = ServerDrainRequest(
            timeout_s=timeout_s, exit_when_done=exit_when_done, scope=scope, replica=replica
        )
        return await self._action("/api/server/drain", body.model_dump(mode="json"))

    async def undrain_server(
        self, *, scope: FleetScope = "replica", replica: str | None = None
    ) -> ActionResult:
        """Cancel a server drain; the gateway accepts requests again (in a fleet: this
        replica, `replica`, or with `scope="fleet"` every live one)."""
        if scope == "replica" and replica is None:
            return await self._action("/api/server/undrain")  # as a single node expects it
        body = ServerUndrainRequest(scope=scope, replica=replica)
        return await self._action("/api/server/undrain", body.model_dump(mode="json"))

    # -- backends (reads: viewer; edits and probes: operator) -------------------------------

    def _parsed(self, response: httpx.Response, model: type[M], what: str) -> M:
        try:
            return model.model_validate(self._json(response))
        except ValidationError:
            raise ActionError(response.status_code, f"the gateway's reply is not {what}") from None

    def _backend(self, response: httpx.Response) -> BackendSnapshot:
        return self._parsed(response, BackendSnapshot, "a backend")

    async def backends(self) -> list[BackendSnapshot]:
        """`GET /api/backends`: every backend with its health (never a key)."""
        data = self._json(await self._request("GET", "/api/backends"))
        return [BackendSnapshot.model_validate(b) for b in data]

    async def backend(self, backend_id: str) -> BackendSnapshot:
        """`GET /api/backends/{id}`: fresh, with its current `revision` (for an edit form)."""
        return self._backend(await self._request("GET", f"/api/backends/{_segment(backend_id)}"))

    async def create_backend(self, spec: dict[str, Any]) -> BackendSnapshot:
        """`POST /api/backends`. A bad spec raises `ActionError` 422 with `.fields`."""
        return self._backend(await self._request("POST", "/api/backends", json=spec))

    async def replace_backend(
        self, backend_id: str, spec: dict[str, Any], *, revision: int | None = None
    ) -> BackendSnapshot:
        """`PUT`: the whole spec; without `api_key` the stored key is kept. A stale `revision`
        raises `ActionError` 409 whose `.current` is the backend as it is now."""
        body = spec if revision is None else {**spec, "revision": revision}
        path = f"/api/backends/{_segment(backend_id)}"
        return self._backend(await self._request("PUT", path, json=body))

    async def patch_backend(
        self, backend_id: str, changes: dict[str, Any], *, revision: int | None = None
    ) -> BackendSnapshot:
        """`PATCH`: only the given fields change (e.g. `{"enabled": false}`)."""
        body = changes if revision is None else {**changes, "revision": revision}
        path = f"/api/backends/{_segment(backend_id)}"
        return self._backend(await self._request("PATCH", path, json=body))

    async def delete_backend(self, backend_id: str, *, revision: int | None = None) -> ActionResult:
        """`DELETE`: it leaves routing at once; its calls in flight finish."""
        headers = {"If-Match": f'"{revision}"'} if revision is not None else None
        path = f"/api/backends/{_segment(backend_id)}"
        response = await self._request("DELETE", path, headers=headers)
        return self._parsed(response, ActionResult, "an action result")

    async def probe_backend(
        self, backend_id: str, spec: dict[str, Any] | None = None
    ) -> ProbeResult:
        """`POST /api/backends/{id}/probe`: probe the stored backend now, or with `spec` try
        that spec without saving it ("Test connection"; the stored key is used if none given)."""
        path = f"/api/backends/{_segment(backend_id)}/probe"
        response = await self._request("POST", path, json=spec)
        return self._parsed(response, ProbeResult, "a probe result")


def _segment(value: str) -> str:
    """One URL path segment: ids with `/`, `?` or spaces must not change the route."""
    return quote(value, safe="")
