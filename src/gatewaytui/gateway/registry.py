"""Connected (and recently gone) workers, their trustworthy status and their counters."""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from gatewaytui.gateway.clock import iso
from gatewaytui.schema import WorkerStatus
from gatewaytui.schema.protocol import RegisterFrame

COUNTER_ARCHIVE_SIZE = 10_000
RESERVED_PREFIX = "backend:"  # backends sit in the scheduler under `backend:<id>`


def model_family(name: str) -> str:
    """`llama3:8b-q4_K_M` -> `llama3:8b`: the model a quantised variant can stand in for."""
    base, sep, tag = name.partition(":")
    if not sep:
        return name.lower()
    return f"{base}:{tag.split('-', 1)[0]}".lower()


@dataclass
class ModelCounter:
    requests: int = 0
    failures: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    embeddings: int = 0


@dataclass
class WorkerCounters:
    """Survives a reconnect of the same worker id (kept in an archive while it is away)."""

    processed: int = 0
    failures: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    embeddings: int = 0
    processing_seconds: float = 0.0
    per_model: dict[str, ModelCounter] = field(default_factory=dict)
    last_error: str | None = None
    last_error_at: float | None = None
    drain_started_at: float | None = None
    draining: bool = False
    reconnects: int = 0
    missed_first_frames: int = (
        0  # consecutive jobs it sent nothing for (workers.first_frame_timeout)
    )

    def model(self, name: str) -> ModelCounter:
        counter = self.per_model.get(name)
        if counter is None:
            counter = self.per_model[name] = ModelCounter()
        return counter


class WorkerConnection(Protocol):
    """What the gateway needs of a worker's live connection."""

    async def send(self, frame: dict[str, Any]) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class WorkerRecord:
    """One worker. `status` is derived, never stored, so it cannot go stale."""

    __slots__ = (
        "assignments",
        "conn",
        "connected_at",
        "counters",
        "cpu_percent",
        "families",
        "families_by_model",
        "features",
        "gen",
        "gone_at",
        "gpus",
        "heard_from",
        "host",
        "id",
        "inflight",
        "labels",
        "last_heartbeat",
        "last_pick",
        "max_concurrency",
        "mem_percent",
        "models",
        "name",
        "order",
        "preferred_batch_size",
        "remote_addr",
        "reported_ready",
        "self_drain_started_at",
        "self_draining",
        "status_reason",
        "unresponsive",
        "version",
    )

    def __init__(
        self, frame: RegisterFrame, conn: WorkerConnection | None, remote: str | None, order: int
    ):
        self.id = frame.id
        self.order = order
        self.counters = WorkerCounters()
        self.last_pick = 0
        self.assignments: set[str] = set()
        self.inflight = 0
        self.apply_register(frame, conn, remote)

    def apply_register(
        self, frame: RegisterFrame, conn: WorkerConnection | None, remote: str | None
    ) -> None:
        now = time.time()
        self.name = frame.name or frame.id
        self.set_models(frame.models)
        self.max_concurrency = frame.max_concurrency
        self.preferred_batch_size = frame.preferred_batch_size
        self.version = frame.version
        self.host = frame.host.model_dump(exclude_none=True)
        self.labels = dict(frame.labels)
        self.features = frozenset(frame.features)
        self.remote_addr = remote
        self.conn = conn
        self.connected_at = now
        self.last_heartbeat = now
        self.gone_at: float | None = None
        self.heard_from = False
        self.reported_ready = True
        self.status_reason: str | None = None
        # Why the gateway stopped routing to it (consecutive missed first frames); None while
        # it answers. Cleared by an answer or a reconnect, not by the worker's own status.
        self.unresponsive: str | None = None
        self.self_draining = False
        self.self_drain_started_at: float | None = None
        self.cpu_percent: float | None = None
        self.mem_percent: float | None = None
        self.gpus: list[dict[str, Any]] = []

    def set_models(self, models: list[str]) -> None:
        self.models = tuple(dict.fromkeys(models))
        self.families_by_model = tuple(model_family(m) for m in self.models)
        self.families = tuple(dict.fromkeys(self.families_by_model))

    def concrete_model(self, requested: str) -> str:
        """The model this worker actually serves for `requested` (itself, or a family match)."""
        if requested in self.models:
            return requested
        family = model_family(requested)
        for model, model_fam in zip(self.models, self.families_by_model, strict=True):
            if model_fam == family:
                return model
        return requested

    @property
    def status(self) -> WorkerStatus:
        if self.gone_at is not None:
            return WorkerStatus.GONE
        if self.unresponsive is not None:
            return WorkerStatus.UNRESPONSIVE
        if self.counters.draining or self.self_draining:
            return WorkerStatus.DRAINING
        if not self.reported_ready or self.max_concurrency <= 0:
            return WorkerStatus.NOT_READY
        if self.inflight > 0:
            return WorkerStatus.WORKING
        if not self.heard_from:
            return WorkerStatus.CONNECTED
        return WorkerStatus.IDLE

    @property
    def accepts_jobs(self) -> bool:
        """Serving status and a free slot: what the scheduler asks."""
        return (
            self.gone_at is None
            and not self.counters.draining
            and not self.self_draining
            and self.reported_ready
            and self.unresponsive is None
            and self.inflight < self.max_concurrency
        )

    @property
    def drain_started_at(self) -> float | None:
        """When the drain began: by the operator, or by the worker itself (SIGTERM)."""
        started = [t for t in (self.counters.drain_started_at, self.self_drain_started_at) if t]
        return min(started) if started else None

    def to_dict(self) -> dict[str, Any]:
        c = self.counters
        reason = self.unresponsive or self.status_reason
        if reason is None and self.max_concurrency <= 0 and self.gone_at is None:
            reason = "worker reports no capacity"
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status.value,
            "status_reason": reason,
            "models": list(self.models),
            "max_concurrency": self.max_concurrency,
            "preferred_batch_size": self.preferred_batch_size,
            "inflight": self.inflight,
            "version": self.version,
            "host": self.host,
            "labels": self.labels,
            "remote_addr": self.remote_addr,
            "connected_at": iso(self.connected_at),
            "last_heartbeat": iso(self.last_heartbeat),
            "gone_at": iso(self.gone_at),
            "draining": c.draining or self.self_draining,
            "drain_started_at": iso(self.drain_started_at),
            "cpu_percent": self.cpu_percent,
            "mem_percent": self.mem_percent,
            "gpus": self.gpus,
            "processed": c.processed,
            "failures": c.failures,
            "tokens_in": c.tokens_in,
            "tokens_out": c.tokens_out,
            "embeddings": c.embeddings,
            "avg_processing_ms": round(c.processing_seconds * 1000 / c.processed, 2)
            if c.processed
            else 0.0,
            "per_model": {
                name: {
                    "requests": m.requests,
                    "failures": m.failures,
                    "tokens_in": m.tokens_in,
                    "tokens_out": m.tokens_out,
                    "embeddings": m.embeddings,
                }
                for name, m in c.per_model.items()
            },
            "last_error": c.last_error,
            "last_error_at": iso(c.last_error_at),
            "reconnects": c.reconnects,
        }


class DuplicateWorkerError(Exception):
    """A second live connection claimed an id that is already connected."""


class WorkerRegistry:
    """Worker records by id, plus a model index for `knows_model` and the models summary."""

    def __init__(self) -> None:
        self.workers: dict[str, WorkerRecord] = {}
        self._archive: OrderedDict[str, WorkerCounters] = OrderedDict()
        self._model_refs: Counter[str] = Counter()
        self._family_refs: Counter[str] = Counter()
        self._order = 0

    def __iter__(self) -> Iterator[WorkerRecord]:
        return iter(self.workers.values())

    def __len__(self) -> int:
        return len(self.workers)

    def get(self, worker_id: str) -> WorkerRecord | None:
        return self.workers.get(worker_id)

    def register(
        self, frame: RegisterFrame, conn: WorkerConnection | None, remote: str | None
    ) -> tuple[WorkerRecord, bool]:
        """Add or revive a worker; returns (record, reconnected). Refuses a live duplicate."""
        if frame.id.startswith(RESERVED_PREFIX):
            raise DuplicateWorkerError(
                f"worker id {frame.id!r}: ids starting with {RESERVED_PREFIX!r} name backends"
            )
        existing = self.workers.get(frame.id)
        if existing is not None:
            if existing.gone_at is None:
                raise DuplicateWorkerError(
                    f"worker id {frame.id!r} is already connected"
                    + (f" from {existing.remote_addr}" if existing.remote_addr else "")
                )
            existing.apply_register(frame, conn, remote)
            existing.counters.reconnects += 1
            self._index(existing)
            return existing, True
        self._order += 1
        record = WorkerRecord(frame, conn, remote, self._order)
        archived = self._archive.pop(frame.id, None)
        if archived is not None:
            record.counters = archived
            archived.reconnects += 1
        self.workers[frame.id] = record
        self._index(record)
        return record, archived is not None

    def update_models(self, record: WorkerRecord, models: list[str]) -> None:
        self._unindex(record)
        record.set_models(models)
        self._index(record)

    def mark_gone(self, record: WorkerRecord) -> None:
        if record.gone_at is None:
            record.gone_at = time.time()
            record.conn = None
            self._unindex(record)

    def remove(self, record: WorkerRecord) -> None:
        """Forget a gone worker, keeping its counters for a later reconnect."""
        if self.workers.pop(record.id, None) is None:
            return
        if record.gone_at is None:
            self._unindex(record)
        self._archive[record.id] = record.counters
        self._archive.move_to_end(record.id)
        while len(self._archive) > COUNTER_ARCHIVE_SIZE:
            self._archive.popitem(last=False)

    def knows_model(self, model: str, family_matching: bool) -> bool:
        """Some live worker lists the model (or, with family matching, its family)."""
        if self._model_refs.get(model):
            return True
        return family_matching and bool(self._family_refs.get(model_family(model)))

    def _index(self, record: WorkerRecord) -> None:
        self._model_refs.update(record.models)
        self._family_refs.update(record.families)

    def _unindex(self, record: WorkerRecord) -> None:
        self._model_refs.subtract(record.models)
        self._family_refs.subtract(record.families)
        for key in [k for k in record.models if self._model_refs[k] <= 0]:
            del self._model_refs[key]
        for key in [k for k in record.families if self._family_refs[k] <= 0]:
            del self._family_refs[key]
