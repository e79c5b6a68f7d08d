"""A backend's live record (spec, revision, health) and its scheduler entry."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from gatewaytui.gateway.backends.http import BackendClient, ProbeOutcome
from gatewaytui.gateway.backends.store import (
    StoredBackend,
)
from gatewaytui.gateway.clock import iso
from gatewaytui.gateway.registry import RESERVED_PREFIX, WorkerConnection, WorkerRecord
from gatewaytui.schema import BackendStatus, HostInfo
from gatewaytui.schema.backends import BackendSpec
from gatewaytui.schema.protocol import (
    RegisterFrame,
)

BACKEND_PREFIX = RESERVED_PREFIX  # a backend's id in the scheduler: `backend:<id>`


class BackendCalls(WorkerConnection, Protocol):
    """What a record needs of the connection its jobs go out on (`calls.BackendConnection`):
    named here so that a record does not import the calls, which read records."""

    tasks: dict[str, asyncio.Task[None]]


class BackendWorker(WorkerRecord):
    """A backend as the scheduler sees it: id `backend:<id>`, its served models, its slots."""

    __slots__ = ("backend_id", "record")

    def __init__(self, record: BackendRecord, conn: BackendCalls) -> None:
        spec = record.spec
        frame = RegisterFrame.model_construct(
            id=BACKEND_PREFIX + spec.id,
            name=spec.id,
            models=[],
            max_concurrency=spec.max_concurrency,
            preferred_batch_size=spec.batch_size,
            version="",
            host=HostInfo(),
            labels=dict(spec.labels),
        )
        super().__init__(frame, conn, None, 0)
        self.backend_id = spec.id
        self.record = record
        self.heard_from = True


class BackendRecord:
    """One backend: its stored spec and revision, its probe health, its scheduler entry."""

    def __init__(
        self, stored: StoredBackend, connect: Callable[[BackendRecord], BackendCalls]
    ) -> None:
        """`connect(record)`: the connection its jobs go out on (the manager's calls)."""
        self.spec = stored.spec
        self.revision = stored.revision
        self.updated_at = stored.updated_at
        self.status = BackendStatus.UNKNOWN
        self.discovered: list[str] = []
        self._served: tuple[BackendSpec, list[str], list[str]] | None = None
        self.latency_ms: float | None = None
        self.last_probe_at: float | None = None
        self.last_ok_at: float | None = None
        self.last_error: str | None = None
        self.consecutive_failures = 0
        self.out = False  # left routing after too many failed probes; back when one passes
        self.next_retry_at: float | None = None
        self.next_probe_at = 0.0
        self.probe_task: asyncio.Task[ProbeOutcome | None] | None = None
        self.deleted = False
        self.conn = connect(self)
        self.worker = BackendWorker(self, self.conn)
        self.http = BackendClient(self.spec.max_concurrency)

    @property
    def serving(self) -> bool:
        """Enabled and not deleted: its models are the gateway's (in rotation or not)."""
        return self.spec.enabled and not self.deleted

    @property
    def routing(self) -> bool:
        """In rotation: serving, and not out after failed probes."""
        return self.serving and not self.out

    def stored(self) -> StoredBackend:
        return StoredBackend(self.spec, self.revision, self.updated_at)

    def served_models(self) -> list[str]:
        """Declared models first, then the discovered ones the include/exclude regexes admit.

        Computed once per (spec, probe result) and cached: the filters run when a probe
        brings a new list or the spec changes, never on a state read. (The patterns
        themselves were checked at validation: no unbounded backtracking, schema.backends.)
        """
        spec, discovered = self.spec, self.discovered
        cached = self._served
        if cached is not None and cached[0] is spec and cached[1] is discovered:
            return cached[2]
        names = [m.name for m in spec.declared_models]
        declared = set(names)
        names += [m for m in discovered if m not in declared and spec.admits(m)]
        self._served = (spec, discovered, names)
        return names

    def to_dict(self) -> dict[str, Any]:
        worker = self.worker
        c = worker.counters
        data = self.spec.public()
        data.update(
            {
                "status": self.status.value,
                "routing": self.routing,
                "models": list(self.served_models()),
                "discovered_models": list(self.discovered),
                "latency_ms": self.latency_ms,
                "last_probe_at": iso(self.last_probe_at),
                "last_ok_at": iso(self.last_ok_at),
                "last_error": self.last_error,
                "consecutive_failures": self.consecutive_failures,
                "next_retry_at": iso(self.next_retry_at),
                "inflight": worker.inflight,
                "requests": c.processed + c.failures,
                "failures": c.failures,
                "tokens_in": c.tokens_in,
                "tokens_out": c.tokens_out,
                "embeddings": c.embeddings,
                "revision": self.revision,
                "updated_at": iso(self.updated_at),
            }
        )
        return data
