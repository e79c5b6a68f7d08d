"""Operator-defined backends: the live records, their health, and how they join routing.

A backend takes part in scheduling as a `BackendWorker`: a worker record whose "connection"
makes HTTP calls to the backend instead of sending frames over a WebSocket. It sits in the
same per-model heaps as the connected workers, so a pick stays O(log n) and workers and
backends serving the same model share the load under the configured strategy (least-busy by
default, with `max_concurrency` as the backend's slots). Everything the gateway does for a
job — the wait queue, one retry elsewhere, cancel on client disconnect, timeouts, usage and
metrics — applies to backend calls unchanged.

Health: each enabled backend is probed every `backends.probe_interval` (and at once after an
edit, or when a call could not reach it). After `backends.failure_threshold` consecutive failed
probes it leaves routing and is retried every `backends.cooldown` until a probe passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp
from pydantic import ValidationError

from gatewaytui.gateway import backend_http
from gatewaytui.gateway.backend_http import BackendClient, ProbeOutcome, UpstreamError
from gatewaytui.gateway.backend_store import (
    BackendStore,
    BackendStoreError,
    StoreChangedError,
    StoredBackend,
)
from gatewaytui.gateway.clock import iso
from gatewaytui.gateway.config import GatewayConfig
from gatewaytui.gateway.events import EventLog
from gatewaytui.gateway.hub import Collection, StateHub
from gatewaytui.gateway.jobs import GatewayError, RawChunks
from gatewaytui.gateway.registry import RESERVED_PREFIX, WorkerRecord, model_family
from gatewaytui.gateway.scheduler import Scheduler
from gatewaytui.schema import BackendStatus, HostInfo, ModelSummary
from gatewaytui.schema.backends import (
    READ_ONLY_FIELDS,
    BackendSpec,
    DeclaredModel,
    ModelCapability,
    clamp_max_output_tokens,
    describe_field_errors,
    field_errors,
)
from gatewaytui.schema.protocol import (
    ChunkFrame,
    ErrorFrame,
    JobFrame,
    RegisterFrame,
    ResultFrame,
    Usage,
)

log = logging.getLogger("gatewaytui.gateway.backends")


@dataclass(frozen=True)
class BackendHost:
    """What the backends need from the rest of the gateway, and nothing more."""

    config: GatewayConfig
    hub: StateHub
    events: EventLog
    scheduler: Scheduler
    worker_knows_model: Callable[[str], bool]  # a connected worker serves it
    worker_frame: Callable[[WorkerRecord, Any], None]  # a backend's answer, as a worker's
    touch_worker: Callable[[WorkerRecord], None]  # its row, capacity and readiness changed
    pump_queue: Callable[[], None]  # slots freed up: hand them to waiters


BACKEND_PREFIX = RESERVED_PREFIX  # a backend's id in the scheduler: `backend:<id>`
PASSIVE_PROBE_GAP_S = 1.0  # a failing call asks for a probe at most this often


# ---- errors ---------------------------------------------------------------------------------


class BackendNotFoundError(GatewayError):
    status, type, code = 404, "invalid_request_error", "not_found"


class BackendExistsError(GatewayError):
    status, type, code = 409, "invalid_request_error", "backend_exists"


class BackendInvalidError(GatewayError):
    """422 with one message per field (`fields`), for forms to show next to each input."""

    status, type, code = 422, "invalid_request_error", "invalid_backend"

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__(f"invalid backend: {describe_field_errors(fields)}")
        self.fields = fields

    def body(self) -> dict[str, Any]:
        body = super().body()
        body["error"]["param"] = next(iter(self.fields), None)
        body["error"]["fields"] = self.fields
        return body


class RevisionConflictError(GatewayError):
    """409: the edit named a revision that is no longer current; `current` is the backend now."""

    status, type, code = 409, "invalid_request_error", "revision_conflict"

    def __init__(self, message: str, current: dict[str, Any]) -> None:
        super().__init__(message)
        self.current = current

    def body(self) -> dict[str, Any]:
        body = super().body()
        body["error"]["current"] = self.current
        return body


class StoreWriteError(GatewayError):
    status, type, code = 500, "server_error", "store_error"


# ---- records --------------------------------------------------------------------------------


class BackendConnection:
    """Stands where a worker's WebSocket would: job frames become HTTP calls to the backend,
    and the answers come back to the gateway as worker frames."""

    def __init__(self, manager: BackendManager, record: BackendRecord) -> None:
        self.manager = manager
        self.record = record
        self.tasks: dict[str, asyncio.Task[None]] = {}

    async def send(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "job":
            # Built by the gateway itself (core.job_frame): no validation on this hot path.
            job = JobFrame.model_construct(**frame)
            task = asyncio.get_running_loop().create_task(
                self._run(job), name=f"backend-{job.job_id}"
            )
            self.tasks[job.job_id] = task
            task.add_done_callback(lambda _, job_id=job.job_id: self.tasks.pop(job_id, None))
        elif kind == "cancel":
            task = self.tasks.get(str(frame.get("job_id")))
            if task is not None:
                task.cancel()  # closes the upstream request

    async def close(self, code: int, reason: str) -> None:
        """Nothing to close: each call is its own request."""

    def _emit(self, frame: Any) -> None:
        self.manager.host.worker_frame(self.record.worker, frame)

    async def _run(self, job: JobFrame) -> None:
        record = self.record
        spec = record.spec  # the spec as of the job's start: an edit affects new jobs only
        try:
            async with record.http.use() as client:
                if job.kind == "chat":
                    await self._chat(job, spec, client)
                else:
                    await self._embeddings(job, spec, client)
        except UpstreamError as exc:
            if exc.code in ("backend_unreachable", "backend_key_missing"):
                self.manager.call_failed(record)
            self._emit(
                ErrorFrame(
                    job_id=job.job_id,
                    message=exc.message[:4096],
                    status=exc.status,
                    code=exc.code,
                    retryable=exc.retryable,
                )
            )
        except Exception:  # a bug must fail the job, not leave it hanging
            log.exception("backend %s: job %s failed", spec.id, job.job_id)
            self._emit(
                ErrorFrame(
                    job_id=job.job_id,
                    message=f"backend {spec.id}: internal error",
                    status=500,
                    code="backend_error",
                )
            )

    def _model(
        self, job: JobFrame, spec: BackendSpec, need: ModelCapability
    ) -> DeclaredModel | None:
        model = spec.declared(job.model)
        if model is not None and not model.can(need):
            elsewhere = self.manager.host.worker_knows_model(job.model)
            caps = ", ".join(c.value for c in model.capabilities)
            raise UpstreamError(
                f"model {job.model!r} on backend {spec.id} is declared without {need.value} "
                f"(capabilities: {caps})",
                status=400,
                code="model_capability",
                retryable=elsewhere,
            )
        return model

    async def _chat(self, job: JobFrame, spec: BackendSpec, client: aiohttp.ClientSession) -> None:
        model = self._model(job, spec, ModelCapability.CHAT)
        body = dict(job.body)
        body["model"] = job.model
        ceiling = model.max_output_tokens if model is not None else 0
        for name in ("max_tokens", "max_completion_tokens"):
            value = body.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                body[name], _ = clamp_max_output_tokens(value, ceiling)
        modifier = model.token_modifier if model is not None else 1.0
        if job.stream and (model is None or model.can(ModelCapability.STREAM)):
            await self._chat_stream(job, spec, body, modifier, client)
            return
        body["stream"] = False
        body.pop("stream_options", None)
        data = await backend_http.post_json(client, spec, "/chat/completions", body)
        usage = _usage(data.get("usage"), modifier)
        if not job.stream:
            self._emit(ResultFrame(job_id=job.job_id, data=data, usage=usage))
            return
        # The model cannot stream (or the server would not): one chunk made from the answer.
        tokens = usage.completion_tokens if usage is not None else 1
        self._emit(ChunkFrame(job_id=job.job_id, data=completion_as_chunk(data), tokens=tokens))
        self._emit(ResultFrame(job_id=job.job_id, usage=usage))

    async def _chat_stream(
        self,
        job: JobFrame,
        spec: BackendSpec,
        body: dict[str, Any],
        modifier: float,
        client: aiohttp.ClientSession,
    ) -> None:
        options = dict(body.get("stream_options") or {})
        client_wants_usage = bool(options.get("include_usage"))
        body["stream"] = True
        body["stream_options"] = {**options, "include_usage": True}  # usage is always counted
        raw_usage: Any = None
        job_id = job.job_id
        emit = self._emit
        # aclosing: the connection goes back before the result frame frees the slot, also
        # when the loop stops early.
        stream = backend_http.stream_chat_batches(client, spec, body)
        async with contextlib.aclosing(stream) as batches:
            async for batch in batches:
                if isinstance(batch, dict):  # a JSON answer to a stream request
                    raw_usage = batch.get("usage")
                    usage = _usage(raw_usage, modifier)
                    tokens = usage.completion_tokens if usage is not None else 1
                    data = completion_as_chunk(batch)
                    emit(ChunkFrame(job_id=job_id, data=data, tokens=tokens))
                    break
                # Passed on as the upstream's bytes; only usage, choices and output are read.
                events: list[bytes] = []
                tokens = 0
                usage_passed = False
                for raw, chunk in batch:
                    if chunk.get("usage"):
                        raw_usage = chunk["usage"]
                    choices = chunk.get("choices")
                    if not choices:  # the usage-only chunk: passed on if the client asked
                        if client_wants_usage:
                            events.append(raw)
                            usage_passed = True
                        continue
                    tokens += _has_output(choices)
                    events.append(raw)
                if events:
                    emit(RawChunks(job_id, events, tokens, usage_passed))
        emit(ResultFrame(job_id=job_id, usage=_usage(raw_usage, modifier)))

    async def _embeddings(
        self, job: JobFrame, spec: BackendSpec, client: aiohttp.ClientSession
    ) -> None:
        model = self._model(job, spec, ModelCapability.EMBED)
        body = dict(job.body)
        body["model"] = job.model
        data = await backend_http.post_json(client, spec, "/embeddings", body)
        dimension = model.embedding_dimension if model is not None else None
        if dimension and "dimensions" not in body:
            for item in data.get("data") or ():
                vector = item.get("embedding") if isinstance(item, dict) else None
                if isinstance(vector, list) and len(vector) != dimension:
                    raise UpstreamError(
                        f"backend {spec.id} returned {len(vector)}-dimensional vectors for "
                        f"{job.model!r}, which is declared with embedding_dimension {dimension}",
                        code="bad_backend_response",
                    )
        usage = _usage(data.get("usage"), model.token_modifier if model is not None else 1.0)
        self._emit(ResultFrame(job_id=job.job_id, data=data, usage=usage))


def _has_output(choices: list[Any]) -> bool:
    for choice in choices:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict) and (
            delta.get("content") or delta.get("tool_calls") or delta.get("reasoning_content")
        ):
            return True
    return False


def _usage(raw: Any, modifier: float) -> Usage | None:
    """The upstream's usage, scaled by the model's token modifier (1 = as reported)."""
    if not isinstance(raw, dict):
        return None

    def scaled(name: str) -> int:
        value = raw.get(name)
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            return 0
        return int(value * modifier + 0.5)

    prompt, completion = scaled("prompt_tokens"), scaled("completion_tokens")
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=scaled("total_tokens") or prompt + completion,
    )


def completion_as_chunk(data: dict[str, Any]) -> dict[str, Any]:
    """A non-streamed chat completion as one `chat.completion.chunk` (with the finish reason)."""
    choices = []
    for index, choice in enumerate(data.get("choices") or ()):
        if not isinstance(choice, dict):
            continue
        message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
        delta: dict[str, Any] = {"role": message.get("role", "assistant")}
        if message.get("content") is not None:
            delta["content"] = message["content"]
        if isinstance(message.get("tool_calls"), list):
            delta["tool_calls"] = [
                {**call, "index": i} if isinstance(call, dict) else call
                for i, call in enumerate(message["tool_calls"])
            ]
        choices.append(
            {
                "index": choice.get("index", index),
                "delta": delta,
                "finish_reason": choice.get("finish_reason"),
            }
        )
    return {
        "id": data.get("id", ""),
        "object": "chat.completion.chunk",
        "created": data.get("created", int(time.time())),
        "model": data.get("model", ""),
        "choices": choices,
    }


class BackendWorker(WorkerRecord):
    """A backend as the scheduler sees it: id `backend:<id>`, its served models, its slots."""

    __slots__ = ("backend_id", "record")

    def __init__(self, record: BackendRecord, conn: BackendConnection) -> None:
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

    def __init__(self, stored: StoredBackend, manager: BackendManager) -> None:
        self.spec = stored.spec
        self.revision = stored.revision
        self.updated_at = stored.updated_at
        self.status = BackendStatus.UNKNOWN
        self.discovered: list[str] = []
        self.latency_ms: float | None = None
        self.last_probe_at: float | None = None
        self.last_ok_at: float | None = None
        self.last_error: str | None = None
        self.consecutive_failures = 0
        self.out = False  # left routing after too many failed probes; back when one passes
        self.next_retry_at: float | None = None
        self.next_probe_at = 0.0
        self.probe_task: asyncio.Task[ProbeOutcome] | None = None
        self.deleted = False
        self.conn = BackendConnection(manager, self)
        self.worker = BackendWorker(self, self.conn)
        self.http = BackendClient(self.spec.max_concurrency)

    @property
    def routing(self) -> bool:
        """In rotation: enabled, not deleted, and not out after failed probes."""
        return self.spec.enabled and not self.deleted and not self.out

    def stored(self) -> StoredBackend:
        return StoredBackend(self.spec, self.revision, self.updated_at)

    def served_models(self) -> list[str]:
        """Declared models first, then the discovered ones the include/exclude regexes admit."""
        names = [m.name for m in self.spec.declared_models]
        declared = set(names)
        names += [m for m in self.discovered if m not in declared and self.spec.admits(m)]
        return names

    def to_dict(self) -> dict[str, Any]:
        worker = self.worker
        c = worker.counters
        data = self.spec.public()
        data.update(
            {
                "status": self.status.value,
                "routing": self.routing,
                "models": self.served_models(),
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


# ---- the manager ----------------------------------------------------------------------------


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


class BackendManager:
    """Owns the backends: CRUD with revisions and durable writes, probes, routing hooks."""

    def __init__(self, host: BackendHost) -> None:
        self.host = host
        c = host.config
        self.interval = c.backends_probe_interval
        self.threshold = c.backends_failure_threshold
        self.cooldown = c.backends_cooldown
        self.store = BackendStore(c.backends_store_path)
        self.records: dict[str, BackendRecord] = {}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._client: aiohttp.ClientSession | None = None  # the probes'; made on first use
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        host.hub.add_collection("backends", Collection(self.item, self.items))
        for stored in self.store.load():  # BackendStoreError: the caller reports it
            self._install(stored)

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def client(self) -> aiohttp.ClientSession:
        if self._client is None:
            self._client = backend_http.make_client()
        return self._client

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._probe_loop(), name="backend-probes"
        )

    async def stop(self) -> None:
        tasks = [self._task] if self._task is not None else []
        for record in self.records.values():
            if record.probe_task is not None:
                tasks.append(record.probe_task)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self._task = None
        for record in self.records.values():
            for task in list(record.conn.tasks.values()):
                task.cancel()
            with contextlib.suppress(Exception):
                await record.http.retire()
        if self._client is not None:
            await self._client.close()
            self._client = None

    # -- state for the hub and the routing hooks ------------------------------------------

    def item(self, backend_id: str) -> dict[str, Any] | None:
        record = self.records.get(backend_id)
        return record.to_dict() if record is not None else None

    def items(self) -> list[dict[str, Any]]:
        return [record.to_dict() for record in self.records.values()]

    def touch(self, record: BackendRecord) -> None:
        self.host.hub.touch("backends", record.spec.id)

    def _serving(self) -> list[BackendRecord]:
        return [r for r in self.records.values() if r.spec.enabled and not r.deleted]

    def knows_model(self, model: str) -> bool:
        """An enabled backend serves `model` (or, with family matching, its family)."""
        family = model_family(model) if self.host.config.model_family_matching else None
        for record in self._serving():
            worker = record.worker
            if model in worker.models or (family is not None and family in worker.families):
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
        record = BackendRecord(stored, self)
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

    def list(self) -> list[dict[str, Any]]:
        return self.items()

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
            return BackendSpec.model_validate(merged)
        except ValidationError as exc:
            raise BackendInvalidError(field_errors(exc)) from None

    def _check_revision(self, record: BackendRecord, wanted: int | None) -> None:
        if wanted is not None and wanted != record.revision:
            raise RevisionConflictError(
                f"backend {record.spec.id!r} is at revision {record.revision}, not {wanted}: "
                "it was changed since you read it (reload it, then edit again)",
                record.to_dict(),
            )

    async def _save(self, records: list[StoredBackend]) -> None:
        try:
            await asyncio.to_thread(self.store.save, records)
        except StoreChangedError as exc:
            raise GatewayError(str(exc), status=409, code="store_changed") from None
        except (OSError, BackendStoreError) as exc:
            log.error("backends store write failed: %s", exc)
            raise StoreWriteError(f"could not save {self.store.path}: {exc}") from None

    async def _commit(self, run: Callable[[], Any]) -> Any:
        """Serialise edits; a client that leaves mid-write does not split file and memory."""
        async with self._lock:
            return await asyncio.shield(run())

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        spec = self._spec_from(body, path_id=None, base=None, partial=False)

        async def run() -> dict[str, Any]:
            if spec.id in self.records:
                raise BackendExistsError(
                    f"a backend with id {spec.id!r} exists; edit it with PUT or PATCH"
                )
            stored = StoredBackend(spec)
            await self._save([*(r.stored() for r in self.records.values()), stored])
            record = self._install(stored)
            self.host.events.add("backend_add", f"backend {spec.id} added ({spec.url})")
            self._probe_soon(record)
            return record.to_dict()

        return await self._commit(run)

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
                return await self._create_from(backend_id, body), True
            self._check_revision(record, wanted)
            spec = self._spec_from(body, path_id=backend_id, base=record.spec, partial=partial)
            if spec == record.spec:
                return record.to_dict(), False  # nothing changed: no new revision
            updated = StoredBackend(spec, record.revision + 1, time.time())
            await self._save(
                [updated if r is record else r.stored() for r in self.records.values()]
            )
            self._apply_update(record, updated)
            return record.to_dict(), False

        return await self._commit(run)

    async def _create_from(self, backend_id: str, body: dict[str, Any]) -> dict[str, Any]:
        spec = self._spec_from(body, path_id=backend_id, base=None, partial=False)
        stored = StoredBackend(spec)
        await self._save([*(r.stored() for r in self.records.values()), stored])
        record = self._install(stored)
        self.host.events.add("backend_add", f"backend {spec.id} added ({spec.url})")
        self._probe_soon(record)
        return record.to_dict()

    def _apply_update(self, record: BackendRecord, updated: StoredBackend) -> None:
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
        self.host.events.add(
            "backend_update",
            f"backend {spec.id} updated to revision {record.revision}: {', '.join(changed)}",
        )
        if spec.enabled and (endpoint_changed or (not old.enabled)):
            self._probe_soon(record)

    async def delete(self, backend_id: str, *, if_match: Any = None) -> dict[str, Any]:
        wanted = _revision_from(if_match)

        async def run() -> dict[str, Any]:
            record = self._record(backend_id)
            self._check_revision(record, wanted)
            await self._save([r.stored() for r in self.records.values() if r is not record])
            del self.records[backend_id]
            self._retire(record)
            self.touch(record)
            inflight = record.worker.inflight
            self.host.events.add(
                "backend_delete",
                f"backend {backend_id} deleted; {inflight} call(s) in flight finish",
            )
            return {
                "message": f"backend {backend_id} deleted; {inflight} call(s) in flight finish",
                "inflight": inflight,
            }

        return await self._commit(run)

    # -- probes ---------------------------------------------------------------------------

    def _probe_soon(self, record: BackendRecord) -> None:
        record.next_probe_at = 0.0
        self._wake.set()

    def call_failed(self, record: BackendRecord) -> None:
        """A call could not reach the backend: probe it soon (unless it is cooling down)."""
        if record.deleted or record.out or not record.spec.enabled:
            return
        now = time.time()
        soonest = max(now, (record.last_probe_at or 0.0) + PASSIVE_PROBE_GAP_S)
        if soonest < record.next_probe_at:
            record.next_probe_at = soonest
            self._wake.set()

    async def probe(self, backend_id: str, body: dict[str, Any] | None) -> dict[str, Any]:
        """Probe a stored backend now (its health is updated), or — with a spec in the body —
        try that spec without saving anything (the form's "Test connection")."""
        record = self.records.get(backend_id)
        if body:
            base = record.spec if record is not None else None
            spec = self._spec_from(body, path_id=backend_id, base=base, partial=base is not None)
            outcome = await backend_http.probe(self.client, spec)
            return self._probe_result(spec, outcome, None, saved=False)
        if record is None:
            raise BackendNotFoundError(f"no backend with id {backend_id!r}")
        try:
            outcome = await self._probe_now(record)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the request itself is being cancelled
            raise BackendNotFoundError(f"backend {backend_id!r} was deleted or changed") from None
        return self._probe_result(record.spec, outcome, record, saved=True)

    def _probe_result(
        self,
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

    async def _probe_now(self, record: BackendRecord) -> ProbeOutcome:
        task = record.probe_task
        if task is None or task.done():
            task = record.probe_task = asyncio.get_running_loop().create_task(
                self._run_probe(record), name=f"probe-{record.spec.id}"
            )
            task.add_done_callback(lambda _: self._wake.set())
        return await asyncio.shield(task)

    async def _run_probe(self, record: BackendRecord) -> ProbeOutcome:
        revision = record.revision
        outcome = await backend_http.probe(self.client, record.spec)
        if record.deleted or record.revision != revision:
            return outcome  # the backend changed meanwhile: a fresh probe follows
        self._apply_probe(record, outcome)
        return outcome

    def _apply_probe(self, record: BackendRecord, outcome: ProbeOutcome) -> None:
        now = outcome.probed_at
        spec_id = record.spec.id
        was_status, was_out = record.status, record.out
        record.last_probe_at = now
        record.latency_ms = outcome.latency_ms
        events = self.host.events
        if outcome.ok:
            record.status = BackendStatus.HEALTHY
            record.consecutive_failures = 0
            record.last_error = None
            record.last_ok_at = now
            record.out = False
            record.next_retry_at = None
            record.discovered = outcome.models
            record.next_probe_at = now + self.interval
            if was_out:
                events.add("backend_health", f"backend {spec_id} is healthy again: back in routing")
            elif was_status is not BackendStatus.HEALTHY:
                served = len(record.served_models())
                events.add(
                    "backend_health",
                    f"backend {spec_id} is healthy ({served} model(s), {outcome.latency_ms} ms)",
                )
        else:
            record.status = BackendStatus.UNHEALTHY
            record.consecutive_failures += 1
            record.last_error = outcome.error
            if record.consecutive_failures >= self.threshold:
                record.out = True
                record.next_retry_at = now + self.cooldown
                record.next_probe_at = record.next_retry_at
                if not was_out:
                    events.add(
                        "backend_health",
                        f"backend {spec_id} left routing after {record.consecutive_failures} "
                        f"failed probes ({outcome.error}); retry at {iso(record.next_retry_at)}",
                        level="error",
                    )
            else:
                record.next_probe_at = now + self.interval
                if was_status is not BackendStatus.UNHEALTHY:
                    events.add(
                        "backend_health",
                        f"backend {spec_id} probe failed: {outcome.error}",
                        level="warning",
                    )
        self._sync(record)

    async def _probe_loop(self) -> None:
        """Probe every enabled backend when it is due; sleep until the next one is."""
        while True:
            self._wake.clear()
            now = time.time()
            soonest = now + self.interval
            for record in list(self.records.values()):
                if not record.spec.enabled:
                    continue
                running = record.probe_task is not None and not record.probe_task.done()
                if running:
                    continue
                if record.next_probe_at <= now:
                    task = record.probe_task = asyncio.get_running_loop().create_task(
                        self._run_probe(record), name=f"probe-{record.spec.id}"
                    )
                    task.add_done_callback(self._probe_done)
                else:
                    soonest = min(soonest, record.next_probe_at)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(soonest - time.time(), 0.01))

    def _probe_done(self, task: asyncio.Task[ProbeOutcome]) -> None:
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("backend probe failed", exc_info=task.exception())
