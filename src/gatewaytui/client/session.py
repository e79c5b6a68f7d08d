"""`Session`: one gateway context as the TUI sees it, live or from a saved snapshot.

It owns the three parts a screen needs and nothing else: the `store` (what to draw), the
`state` (how current it is) and the actions (what an operator may do). A live session
mirrors `WS /api/state/stream` through a `GatewayConnection` and acts through a
`GatewayClient`; an offline one is a `StateStore` loaded from a file, reports `offline`, and
refuses actions with `OfflineError`.

    session = Session.live("prod", "http://10.0.0.5:8080", token)
    session.start()
    async for update in session.updates():   # coalesced; first one: draw everything
        redraw(session.store, update.change, update.state)
    ...
    await session.stop()
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from gatewaytui.client.connection import (
    ConnectionState,
    ConnectionStatus,
    GatewayConnection,
    Update,
)
from gatewaytui.client.errors import ClientError
from gatewaytui.client.http import FleetScope, GatewayClient, Health
from gatewaytui.client.store import StateStore
from gatewaytui.schema.api import ActionResult
from gatewaytui.schema.backends import ProbeResult
from gatewaytui.schema.state import BackendSnapshot
from gatewaytui.shared.operator_token import local_token


class OfflineError(ClientError):
    """An action was asked of a session that shows a saved snapshot."""


class Session:
    """A named gateway context: its store, its connection state and its actions.

    Build one with `Session.live(...)` or `Session.offline(...)`.
    """

    def __init__(
        self,
        name: str,
        store: StateStore,
        *,
        connection: GatewayConnection | None = None,
        client: GatewayClient | None = None,
        snapshot_path: Path | None = None,
    ) -> None:
        self.name = name
        self.store = store
        self.connection = connection
        self.client = client
        self.snapshot_path = snapshot_path
        self._offline_state = ConnectionState(ConnectionStatus.OFFLINE, time.time())
        self._stopped = asyncio.Event()

    @classmethod
    def live(
        cls, name: str, url: str, token: str | None = None, **connection_options: Any
    ) -> Session:
        """A session that follows the gateway at `url` (`connection_options`: see
        `GatewayConnection`, e.g. `backoff_base`, `keepalive`)."""
        store = StateStore()
        token = token or local_token(url)  # a gateway on this machine: its generated token
        connection = GatewayConnection(url, token, store=store, **connection_options)
        return cls(name, store, connection=connection, client=GatewayClient(url, token))

    @classmethod
    def offline(cls, path: str | os.PathLike[str], name: str | None = None) -> Session:
        """A session over a saved state file; raises `SnapshotError` if the file is bad."""
        source = Path(path).expanduser()
        return cls(name or source.name, StateStore.load(source), snapshot_path=source)

    def __repr__(self) -> str:
        where = self.url or str(self.snapshot_path)
        return f"<Session {self.name!r} {where} {self.state.status.value}>"

    # -- what to show -----------------------------------------------------------------------

    @property
    def is_offline(self) -> bool:
        return self.connection is None

    @property
    def url(self) -> str | None:
        return self.connection.base_url if self.connection is not None else None

    @property
    def state(self) -> ConnectionState:
        return self.connection.state if self.connection is not None else self._offline_state

    @property
    def can_act(self) -> bool:
        """Actions make sense now: live, and the gateway is not read-only."""
        return self.state.live and not self.store.server.get("read_only", False)

    def status_line(self, now: float | None = None) -> str:
        """One line of plain text for a status bar: what this context shows and how fresh."""
        state = self.state
        now = time.time() if now is None else now
        status = state.status
        if status is ConnectionStatus.OFFLINE:
            as_of = f" as of {self.store.as_of}" if self.store.as_of else ""
            return f"{self.name}: offline snapshot {self.snapshot_path}{as_of}"
        if status is ConnectionStatus.LIVE:
            return f"{self.name}: live ({self.url})"
        if status is ConnectionStatus.UNAUTHORIZED:
            return f"{self.name}: not authorized by {self.url}: {state.last_error}"
        if status is ConnectionStatus.STOPPED:
            return f"{self.name}: disconnected"
        since = datetime.fromtimestamp(state.since).strftime("%H:%M:%S")
        head = "reconnecting" if status is ConnectionStatus.RECONNECTING else "connecting"
        parts = [f"{self.name}: {head} to {self.url} since {since}"]
        retry_in = state.retry_in(now)
        if retry_in is not None:
            parts.append(f"retry in {retry_in:.0f} s (attempt {state.attempt + 1})")
        elif state.attempt:
            parts.append(f"attempt {state.attempt + 1}")
        if state.last_error:
            parts.append(f"last error: {state.last_error}")
        return " — ".join(parts)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start following the gateway (no-op offline). Needs a running event loop."""
        self._stopped.clear()
        if self.connection is not None:
            self.connection.start()

    async def stop(self) -> None:
        """Stop the stream and close the HTTP client; the store keeps the last state."""
        self._stopped.set()
        if self.connection is not None:
            await self.connection.stop()
        if self.client is not None:
            await self.client.aclose()

    def retry_now(self) -> None:
        """Reconnect without waiting out the backoff (no-op offline)."""
        if self.connection is not None:
            self.connection.retry_now()

    async def updates(self) -> AsyncIterator[Update]:
        """Coalesced `Update`s until `stop()`; offline, one (with everything) and then none."""
        if self.connection is not None:
            async for update in self.connection.updates():
                yield update
            return
        yield Update(self._offline_state, self.store.full_change(), True)
        await self._stopped.wait()

    def take_update(self) -> Update | None:
        """The update `updates()` has not yielded yet, now (None offline or if none)."""
        return self.connection.take_update() if self.connection is not None else None

    def save_snapshot(
        self, path: str | os.PathLike[str], *, history: Mapping[str, Any] | None = None
    ) -> Path:
        """Save what is shown now as a state file that `Session.offline` can open (with the
        recent `history` read from the gateway, or the one the opened snapshot carries)."""
        return self.store.save(path, history=history)

    # -- actions ----------------------------------------------------------------------------

    def _client(self) -> GatewayClient:
        if self.client is None:
            raise OfflineError(f"{self.name} is an offline snapshot; actions need a live gateway")
        return self.client

    async def health(self) -> Health:
        return await self._client().health()

    async def whoami(self) -> str:
        """The token's role ("viewer" or "operator"), to hide actions a viewer cannot take."""
        return await self._client().whoami()

    async def drain_worker(self, worker_id: str) -> ActionResult:
        return await self._client().drain_worker(worker_id)

    async def undrain_worker(self, worker_id: str) -> ActionResult:
        return await self._client().undrain_worker(worker_id)

    async def cancel_job(self, job_id: str) -> ActionResult:
        return await self._client().cancel_job(job_id)

    async def drain_server(
        self,
        timeout_s: float | None = None,
        *,
        exit_when_done: bool = False,
        scope: FleetScope = "replica",
        replica: str | None = None,
    ) -> ActionResult:
        return await self._client().drain_server(
            timeout_s, exit_when_done=exit_when_done, scope=scope, replica=replica
        )

    async def undrain_server(
        self, *, scope: FleetScope = "replica", replica: str | None = None
    ) -> ActionResult:
        return await self._client().undrain_server(scope=scope, replica=replica)

    # -- backends ---------------------------------------------------------------------------

    async def backend(self, backend_id: str) -> BackendSnapshot:
        return await self._client().backend(backend_id)

    async def create_backend(self, spec: dict[str, Any]) -> BackendSnapshot:
        return await self._client().create_backend(spec)

    async def replace_backend(
        self, backend_id: str, spec: dict[str, Any], *, revision: int | None = None
    ) -> BackendSnapshot:
        return await self._client().replace_backend(backend_id, spec, revision=revision)

    async def patch_backend(
        self, backend_id: str, changes: dict[str, Any], *, revision: int | None = None
    ) -> BackendSnapshot:
        return await self._client().patch_backend(backend_id, changes, revision=revision)

    async def delete_backend(self, backend_id: str, *, revision: int | None = None) -> ActionResult:
        return await self._client().delete_backend(backend_id, revision=revision)

    async def probe_backend(
        self, backend_id: str, spec: dict[str, Any] | None = None
    ) -> ProbeResult:
        return await self._client().probe_backend(backend_id, spec)
