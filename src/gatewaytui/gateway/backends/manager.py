"""The backends' owner: CRUD with revisions and durable writes, and the hooks that put
backends into routing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from pydantic import ValidationError

from gatewaytui.gateway.backends import http as backend_http
from gatewaytui.gateway.backends.calls import BackendConnection
from gatewaytui.gateway.backends.errors import (
    BackendExistsError,
    BackendInvalidError,
    BackendNotFoundError,
    RevisionConflictError,
    StoreWriteError,
)
from gatewaytui.gateway.backends.health import BackendHealth
from gatewaytui.gateway.backends.host import BackendHost
from gatewaytui.gateway.backends.http import BackendClient, ProbeOutcome
from gatewaytui.gateway.backends.records import BackendRecord
from gatewaytui.gateway.backends.store import (
    BackendStore,
    BackendStoreError,
    StoreChangedError,
    StoredBackend,
)
from gatewaytui.gateway.clock import iso
from gatewaytui.gateway.hub import Collection
from gatewaytui.gateway.jobs import GatewayError
from gatewaytui.gateway.registry import model_family
from gatewaytui.gateway.scheduler import Scheduler
from gatewaytui.schema import BackendStatus, ModelSummary
from gatewaytui.schema.backends import (
    READ_ONLY_FIELDS,
    BackendSpec,
    env_ref_problem,
    field_errors,
)
from gatewaytui.shared.text import plural

log = logging.getLogger("gatewaytui.gateway.backends")
T = TypeVar("T")
STALE_RETRIES = 5  # a fleet edit that keeps losing its compare-and-set race gives up (409)


class StaleBackendError(Exception):
    """A fleet write lost its compare-and-set: `current` is what the shared store holds now
    (None: no such backend there); the manager applies it and runs the edit again."""

    def __init__(self, backend_id: str, current: StoredBackend | None) -> None:
        super().__init__(backend_id)
        self.backend_id = backend_id
        self.current = current


class SharedBackendStore(Protocol):
    """Where a fleet keeps the backends (gateway/cluster/backends.py): every edit is a
    compare-and-set on the backend's revision there, acknowledged only once it is stored."""

    async def read(self, backend_id: str) -> StoredBackend | None:
        """The stored backend now (GatewayError 503 when the store is unreachable)."""

    async def write(
        self, backend_id: str, base_revision: int, stored: StoredBackend | None
    ) -> None:
        """Store (None: delete) if the stored revision is still `base_revision` (0: absent);
        StaleBackendError if not, GatewayError 503 when the store is unreachable."""

    def applied(self) -> None:
        """The local records changed (keep the local file as a copy of the fleet's)."""


def _revision_from(value: Any) -> int | None:
    """A revision named by a body field or an `If-Match` header (`3`, `"3"`, `W/"3"`)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise BackendInvalidError({"revision": "expected a positive integer"})
    if isinstance(value, str):
        text = value.strip()
        text = text.removeprefix("W/").strip('"')
        if not text.isdigit():
            raise BackendInvalidError({"revision": "expected a positive integer"})
        value = int(text)
    if not isinstance(value, int) or value < 1:
        raise BackendInvalidError({"revision": "expected a positive integer"})
    return value


def _check_revision(record: BackendRecord, wanted: int | None) -> None:
    """409 when the edit names a revision that is no longer the current one."""
    if wanted is not None and wanted != record.revision:
        raise RevisionConflictError(
            f"backend {record.spec.id!r} is at revision {record.revision}, not {wanted}: "
            "it was changed since you read it (reload it, then edit again)",
            record.to_dict(),
        )


class BackendManager:
    """Owns the backends: CRUD with revisions and durable writes, probes, routing hooks."""

    def __init__(self, host: BackendHost) -> None:
        self.host = host
        c = host.config
        self.store = BackendStore(c.backends_store_path)
        self.records: dict[str, BackendRecord] = {}
        self.lock = asyncio.Lock()  # edits (and a fleet's reconcile) run one at a time
        self.shared: SharedBackendStore | None = None  # set by a fleet (gateway/cluster)
        self.health = BackendHealth(c, self.records, host.events, self._sync)
        # A record's calls, as a worker's connection would carry them (a failed call counts
        # against its health).
        self._connect = lambda record: BackendConnection(
            host, lambda failed: self.health.call_failed(failed), record
        )
        self._tasks: set[asyncio.Task[None]] = set()
        host.hub.add_collection("backends", Collection(self.item, self.items))
        for stored in self.store.load():  # BackendStoreError: the caller reports it
            self._install(stored)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self.health.start()

    async def stop(self) -> None:
        await self.health.stop()
        for record in self.records.values():
            for task in list(record.conn.tasks.values()):
                task.cancel()
            with contextlib.suppress(Exception):
                await record.http.retire()
        await self.health.close()

    # -- state for the hub and the routing hooks ------------------------------------------

    def item(self, backend_id: str) -> dict[str, Any] | None:
        record = self.records.get(backend_id)
        return record.to_dict() if record is not None else None

    def items(self) -> list[dict[str, Any]]:
        return [record.to_dict() for record in self.records.values()]

    def touch(self, record: BackendRecord) -> None:
        self.host.hub.touch("backends", record.spec.id)

    def _serving(self) -> list[BackendRecord]:
        return [r for r in self.records.values() if r.serving]

    def knows_model(self, model: str) -> bool:
        """An enabled backend serves `model` (or, with family matching, its family)."""
        family = model_family(model) if self.host.config.model_family_matching else None
        for record in self.records.values():  # per request: no list, no generator
            worker = record.worker
            if record.serving and (model in worker.models or family in worker.families):
                return True
        return False

    def knows_model_exactly(self, model: str) -> bool:
        """An enabled backend serves `model` by that very name (metric labels)."""
        for record in self.records.values():  # per request: no list, no generator
            if record.serving and model in record.worker.models:
                return True
        return False

    def routable_count(self) -> int:
        return sum(1 for r in self.records.values() if r.routing and r.worker.models)

    def model_owners(self) -> dict[str, list[str]]:
        """Model -> `backend:<id>` of every enabled backend serving it (for /v1/models)."""
        owners: dict[str, list[str]] = {}
        for record in self._serving():
            for model in record.worker.models:
                owners.setdefault(model, []).append(record.worker.id)
        return owners

    def add_models(self, models: dict[str, dict[str, Any]]) -> None:
        """Add backends to the per-model summary (owners and capacity); refresh their rows."""
        for record in self._serving():
            worker = record.worker
            for model in worker.models:
                summary = models.get(model)
                if summary is None:
                    summary = models[model] = ModelSummary(id=model).model_dump()
                summary["owned_by"].append(worker.id)
                summary["backends"] += 1
                if record.routing:
                    summary["ready_backends"] += 1
                    summary["capacity"] += worker.max_concurrency
        for record in self.records.values():
            self.touch(record)  # in-flight counts move with every pick and release

    # -- scheduler membership -------------------------------------------------------------

    def _install(self, stored: StoredBackend) -> BackendRecord:
        record = BackendRecord(stored, self._connect)
        self.records[record.spec.id] = record
        self.host.scheduler.add(record.worker)
        self._sync(record)
        return record

    def _sync(self, record: BackendRecord) -> None:
        """Bring the record's scheduler entry in line with its spec and health."""
        host = self.host
        scheduler = host.scheduler
        worker = record.worker
        spec = record.spec
        models = tuple(record.served_models()) if spec.enabled and not record.deleted else ()
        if models != worker.models:
            old_keys = list(Scheduler._keys(worker))
            worker.set_models(list(models))
            scheduler.reindex(worker, old_keys)
        worker.max_concurrency = spec.max_concurrency
        worker.preferred_batch_size = spec.batch_size
        worker.labels = dict(spec.labels)
        worker.reported_ready = record.routing
        scheduler.update(worker)
        host.touch_worker(worker)  # marks the derived model summary and readiness
        host.hub.touch_server()
        self.touch(record)
        if record.routing:
            host.pump_queue()  # waiters for its models may go now

    def _retire(self, record: BackendRecord) -> None:
        """Out of routing for good; calls in flight finish on their own."""
        record.deleted = True
        worker = record.worker
        worker.gone_at = time.time()
        self.host.scheduler.remove(worker)
        self.host.touch_worker(worker)
        self.host.hub.touch_server()
        if record.probe_task is not None:
            record.probe_task.cancel()
        self._background(record.http.retire())

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- reads ----------------------------------------------------------------------------

    def _record(self, backend_id: str) -> BackendRecord:
        record = self.records.get(backend_id)
        if record is None:
            raise BackendNotFoundError(f"no backend with id {backend_id!r}")
        return record

    def get(self, backend_id: str) -> dict[str, Any]:
        return self._record(backend_id).to_dict()

    # -- edits ----------------------------------------------------------------------------

    def _spec_from(
        self,
        body: dict[str, Any],
        *,
        path_id: str | None,
        base: BackendSpec | None,
        partial: bool,
    ) -> BackendSpec:
        """Validate a request body into a spec. `base`: the stored spec (PATCH merges onto it;
        PUT and PATCH keep its key unless the body brings a new one)."""
        body = {k: v for k, v in body.items() if k not in READ_ONLY_FIELDS}
        has_key = "api_key" in body
        new_key = body.pop("api_key", None)
        if new_key is not None and not isinstance(new_key, str):
            raise BackendInvalidError({"api_key": "expected a string (or env:VAR)"})
        merged: dict[str, Any] = {}
        if partial and base is not None:
            merged = base.model_dump(mode="json", exclude={"api_key"})
        merged.update(body)
        if path_id is not None:
            if "id" in body and body["id"] != path_id:
                raise BackendInvalidError(
                    {"id": f"does not match the URL ({path_id!r}); the id cannot be changed"}
                )
            merged["id"] = path_id
        if not has_key or new_key is None:  # absent or null: keep the stored key
            key = base.api_key.get_secret_value() if base and base.api_key else None
        else:
            key = new_key or None  # "" removes the key
        merged["api_key"] = key
        try:
            spec = BackendSpec.model_validate(merged)
        except ValidationError as exc:
            raise BackendInvalidError(field_errors(exc)) from None
        env = spec.api_key_env
        if env is not None and (problem := env_ref_problem(env)):
            raise BackendInvalidError({"api_key": problem})
        kept = key is not None and (not has_key or new_key is None) and base is not None
        if kept and base is not None and spec.url != base.url:  # the key stays with its URL
            raise BackendInvalidError(
                    {"api_key": "the URL changed: send the key again (a stored key is only "
                     "ever sent to the URL it was stored with)"}
                )  # fmt: skip
        return spec

    async def _write(self, backend_id: str, base: int, stored: StoredBackend | None) -> None:
        """Make one edit durable before it is applied: in the fleet's store (a compare-and-set
        on `base`, the revision the edit started from), or in the local file."""
        if self.shared is not None:
            await self.shared.write(backend_id, base, stored)
            return
        entries = [r.stored() for r in self.records.values() if r.spec.id != backend_id]
        if stored is not None:
            ids = list(self.records)
            at = ids.index(backend_id) if backend_id in self.records else len(ids)
            entries.insert(at, stored)
        try:
            await asyncio.to_thread(self.store.save, entries)
        except StoreChangedError as exc:
            raise GatewayError(str(exc), status=409, code="store_changed") from None
        except (OSError, BackendStoreError) as exc:
            log.error("backends store write failed: %s", exc)
            raise StoreWriteError(f"could not save {self.store.path}: {exc}") from None

    async def _commit(self, backend_id: str, run: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Serialise edits; a client that leaves mid-write does not split store and memory.
        In a fleet the edit starts from the shared store's copy of the backend, and runs again
        from the new copy when another replica's edit won the race (its revision checks then
        answer 409 as on a single node)."""
        async with self.lock:
            for _ in range(STALE_RETRIES):
                try:
                    if self.shared is not None:
                        current = await self.shared.read(backend_id)
                        self.apply_stored(backend_id, current, announce=False)
                    return await asyncio.shield(run())
                except StaleBackendError as stale:
                    self.apply_stored(stale.backend_id, stale.current, announce=False)
        raise GatewayError(
            f"backend {backend_id!r} kept changing on other replicas during the edit; "
            "reload it and try again",
            status=409,
            code="revision_conflict",
        )

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        spec = self._spec_from(body, path_id=None, base=None, partial=False)

        async def run() -> dict[str, Any]:
            if spec.id in self.records:
                raise BackendExistsError(
                    f"a backend with id {spec.id!r} exists; edit it with PUT or PATCH"
                )
            return await self._add(spec)

        return await self._commit(spec.id, run)

    async def _add(self, spec: BackendSpec) -> dict[str, Any]:
        """The one way a backend is added (POST, or PUT of an id not there yet)."""
        stored = StoredBackend(spec)
        await self._write(spec.id, 0, stored)
        return self._added(stored, announce=True).to_dict()

    def _added(self, stored: StoredBackend, *, announce: bool) -> BackendRecord:
        record = self._install(stored)
        if announce:
            spec = stored.spec
            self.host.events.add("backend_add", f"backend {spec.id} added ({spec.url})")
        self.health.probe_soon(record)
        return record

    async def update(
        self, backend_id: str, body: dict[str, Any], *, partial: bool, if_match: Any = None
    ) -> tuple[dict[str, Any], bool]:
        """PUT (replace, or create if absent) and PATCH (merge). Returns (backend, created)."""
        wanted = _revision_from(body.get("revision", if_match))

        async def run() -> tuple[dict[str, Any], bool]:
            record = self.records.get(backend_id)
            if record is None:
                if partial or wanted is not None:
                    raise BackendNotFoundError(f"no backend with id {backend_id!r}")
                spec = self._spec_from(body, path_id=backend_id, base=None, partial=False)
                return await self._add(spec), True
            _check_revision(record, wanted)
            spec = self._spec_from(body, path_id=backend_id, base=record.spec, partial=partial)
            if spec == record.spec:
                return record.to_dict(), False  # nothing changed: no new revision
            updated = StoredBackend(spec, record.revision + 1, time.time())
            await self._write(backend_id, record.revision, updated)
            self._apply_update(record, updated, announce=True)
            return record.to_dict(), False

        return await self._commit(backend_id, run)

    def _apply_update(
        self, record: BackendRecord, updated: StoredBackend, *, announce: bool
    ) -> None:
        old, spec = record.spec, updated.spec
        record.spec, record.revision, record.updated_at = spec, updated.revision, updated.updated_at
        changed = sorted(
            name for name in BackendSpec.model_fields if getattr(old, name) != getattr(spec, name)
        )
        endpoint_changed = (old.url, old.type, old.api_key) != (spec.url, spec.type, spec.api_key)
        if endpoint_changed:  # what we knew about the old endpoint says nothing of the new one
            record.status = BackendStatus.UNKNOWN
            record.discovered = []
            record.consecutive_failures = 0
            record.out = False
            record.next_retry_at = None
            record.last_error = None
            record.latency_ms = None
        if spec.max_concurrency != record.http.size:  # a pool sized for the new concurrency
            old_http, record.http = record.http, BackendClient(spec.max_concurrency)
            self._background(old_http.retire())
        self._sync(record)
        if announce:
            self.host.events.add(
                "backend_update",
                f"backend {spec.id} updated to revision {record.revision}: {', '.join(changed)}",
            )
        if spec.enabled and (endpoint_changed or (not old.enabled)):
            self.health.probe_soon(record)

    async def delete(self, backend_id: str, *, if_match: Any = None) -> dict[str, Any]:
        wanted = _revision_from(if_match)

        async def run() -> dict[str, Any]:
            record = self._record(backend_id)
            _check_revision(record, wanted)
            await self._write(backend_id, record.revision, None)
            inflight = self._removed(record, announce=True)
            return {
                "message": (
                    f"backend {backend_id} deleted; {plural(inflight, 'call')} in flight finish"
                ),
                "inflight": inflight,
            }

        return await self._commit(backend_id, run)

    def _removed(self, record: BackendRecord, *, announce: bool) -> int:
        """Out of the records and routing; returns the calls still in flight (they finish)."""
        backend_id = record.spec.id
        del self.records[backend_id]
        self._retire(record)
        self.touch(record)
        inflight = record.worker.inflight
        if announce:
            self.host.events.add(
                "backend_delete",
                f"backend {backend_id} deleted; {plural(inflight, 'call')} in flight finish",
            )
        return inflight

    def apply_stored(
        self, backend_id: str, stored: StoredBackend | None, *, announce: bool
    ) -> bool:
        """Bring one backend in line with the fleet's copy (None: it is gone there); True if
        anything changed. The replica that made an edit announces it; the others apply it
        quietly (its event reaches them through the fleet's event stream)."""
        record = self.records.get(backend_id)
        if stored is None:
            if record is None:
                return False
            self._removed(record, announce=announce)
        elif record is None:
            self._added(stored, announce=announce)
        elif (record.revision, record.spec) != (stored.revision, stored.spec):
            self._apply_update(record, stored, announce=announce)
        else:
            return False
        if self.shared is not None:
            self.shared.applied()
        return True

    # -- probes on request -----------------------------------------------------------------

    async def probe(self, backend_id: str, body: dict[str, Any] | None) -> dict[str, Any]:
        """Probe a stored backend now (its health is updated), or — with a spec in the body —
        try that spec without saving anything (the form's "Test connection")."""
        record = self.records.get(backend_id)
        if body:
            base = record.spec if record is not None else None
            spec = self._spec_from(body, path_id=backend_id, base=base, partial=base is not None)
            outcome = await backend_http.probe(self.health.client, spec)
            return _probe_result(spec, outcome, None, saved=False)
        if record is None:
            raise BackendNotFoundError(f"no backend with id {backend_id!r}")
        try:
            outcome = await self.health.probe_now(record)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the request itself is being cancelled
            raise BackendNotFoundError(f"backend {backend_id!r} was deleted or changed") from None
        return _probe_result(record.spec, outcome, record, saved=True)


def _probe_result(
    spec: BackendSpec,
    outcome: ProbeOutcome,
    record: BackendRecord | None,
    *,
    saved: bool,
) -> dict[str, Any]:
    names = [m.name for m in spec.declared_models]
    names += [m for m in outcome.models if m not in names and spec.admits(m)]
    status = BackendStatus.HEALTHY if outcome.ok else BackendStatus.UNHEALTHY
    return {  # the shape of ProbeResult, with the wire's millisecond timestamps
        "ok": outcome.ok,
        "backend_id": spec.id,
        "status": status.value,
        "latency_ms": outcome.latency_ms,
        "models": names,
        "discovered_models": outcome.models,
        "error": outcome.error,
        "probed_at": iso(outcome.probed_at),
        "saved": saved,
        "backend": record.to_dict() if record is not None else None,
    }
