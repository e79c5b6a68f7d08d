"""In-flight jobs and their assignments (the unit of work sent to one worker)."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from dataclasses import dataclass, field
from typing import Any

from gatewaytui.gateway.clock import iso
from gatewaytui.gateway.registry import WorkerRecord
from gatewaytui.schema.protocol import Usage
from gatewaytui.shared import codec


class GatewayError(Exception):
    """An error with an HTTP status and an OpenAI-style type/code, safe to show clients."""

    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "code": self.code}}


class ModelNotFoundError(GatewayError):
    status, type, code = 404, "invalid_request_error", "model_not_found"


class QueueFullError(GatewayError):
    status, type, code = 503, "server_error", "queue_full"


class QueueTimeoutError(GatewayError):
    status, type, code = 503, "server_error", "queue_timeout"


class DrainingError(GatewayError):
    status, type, code = 503, "server_error", "server_draining"


class UpstreamTimeoutError(GatewayError):
    status, type, code = 504, "server_error", "request_timeout"


class WorkerLostError(GatewayError):
    status, type, code = 502, "server_error", "worker_lost"


class JobCancelledError(GatewayError):
    status, type, code = 503, "server_error", "job_cancelled"


class WorkerJobError(GatewayError):
    """A worker reported an error for a job (status comes from the worker's frame)."""

    type = "server_error"
    code = "worker_error"


class UnknownTargetError(GatewayError):
    status, type, code = 404, "invalid_request_error", "not_found"


class ConflictError(GatewayError):
    status, type, code = 409, "invalid_request_error", "conflict"


class JobTooLargeError(GatewayError):
    """The job frame would exceed `workers.max_frame_bytes`: refused before it is sent, so a
    worker connection is never dropped for a request the gateway knew could not fit."""

    status, type, code = 413, "invalid_request_error", "request_too_large"


class BadRequestError(GatewayError):
    status, type, code = 400, "invalid_request_error", "invalid_request"


@dataclass(frozen=True)
class WorkerLost:
    """Sentinel put on an assignment's queue when its worker disappears."""

    reason: str


@dataclass(frozen=True)
class Cancelled:
    reason: str


_ids = itertools.count(1)
_PREFIX = os.urandom(3).hex()


_KIND_PREFIX = {"chat": "chat", "embeddings": "emb", "mcp": "mcp"}


def new_job_id(kind: str) -> str:
    """`chat-000042-3fa9c1`: the sequence first, so a narrow column still tells jobs apart;
    the per-process suffix keeps ids unique across gateway restarts."""
    return f"{_KIND_PREFIX.get(kind, kind[:4])}-{next(_ids):06d}-{_PREFIX}"


@dataclass(eq=False)
class Waiter:
    """A request waiting in the FIFO queue (`slots.SlotQueue`) for a free slot."""

    model: str
    exclude: frozenset[str]
    future: asyncio.Future[WorkerRecord]
    enqueued: float = field(default_factory=time.monotonic)


class Assignment:
    """One piece of a job on one worker; frames for it arrive on `queue`."""

    __slots__ = (
        "accepted",
        "answered",
        "id",
        "job",
        "model",
        "queue",
        "released",
        "started",
        "worker",
    )

    def __init__(self, assignment_id: str, job: Job, worker: WorkerRecord):
        self.id = assignment_id
        self.answered = False  # the worker sent something for it (hung-worker detection)
        self.accepted = False  # the worker acknowledged it (an `accepted` frame)
        self.job = job
        self.worker = worker
        self.model = worker.concrete_model(job.model)  # what this worker calls the model
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.started = time.monotonic()
        self.released = False


@dataclass
class Job:
    """An in-flight request as shown in state."""

    id: str
    kind: str
    model: str
    stream: bool = False
    metric_model: str = ""  # the served name metrics label it with (Gateway._metric_label)
    client: str | None = None
    started_at: float = field(default_factory=time.time)
    state: str = "queued"
    worker: str | None = None
    workers: list[str] = field(default_factory=list)
    backend: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    attempt: int = 1
    partition: dict[str, int] | None = None
    assignments: dict[str, Assignment] = field(default_factory=dict)
    cancel_reason: str | None = None
    deadline: float = float("inf")  # time.monotonic() by which the whole request must end
    # For the usage ledger and the overhead header (gateway/history):
    key: str | None = None  # the API key's name, never the key
    mono: float = field(default_factory=time.monotonic)
    dispatched_at: float | None = None  # wall time of the first dispatch to a worker
    first_token_ms: float | None = None
    queue_wait_s: float = 0.0
    upstream_s: float = 0.0  # time with at least one assignment out at a worker
    busy: int = 0
    busy_since: float = 0.0
    error: BaseException | None = None  # a failure reported in-band (an SSE error event)

    def upstream_begin(self) -> None:
        if self.busy == 0:
            self.busy_since = time.perf_counter()
            if self.dispatched_at is None:
                self.dispatched_at = time.time()
        self.busy += 1

    def upstream_end(self) -> None:
        self.busy -= 1
        if self.busy == 0:
            self.upstream_s += time.perf_counter() - self.busy_since

    def upstream_so_far(self) -> float:
        if self.busy:
            return self.upstream_s + time.perf_counter() - self.busy_since
        return self.upstream_s

    def first_token(self) -> None:
        if self.first_token_ms is None:
            self.first_token_ms = (time.monotonic() - self.mono) * 1000

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "model": self.model,
            "worker": self.worker,
            "workers": list(self.workers),
            "backend": self.backend,
            "state": self.state,
            "started_at": iso(self.started_at),
            "stream": self.stream,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "attempt": self.attempt,
            "partition": dict(self.partition) if self.partition is not None else None,
            "client": self.client,
        }


@dataclass
class Totals:
    """Counters over every finished request, for the server row and `/metrics`."""

    requests: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    embeddings: int = 0


@dataclass
class JobTable:
    """The jobs in flight and their assignments to workers: plain data that the job path
    writes and the live state reads."""

    jobs: dict[str, Job] = field(default_factory=dict)
    assignments: dict[str, Assignment] = field(default_factory=dict)
    totals: Totals = field(default_factory=Totals)


def job_frame(
    job_id: str, kind: str, model: str, stream: bool, body: dict[str, Any]
) -> dict[str, Any]:
    """A `JobFrame` as the dict that goes on the wire (built directly: this is the hot path;
    tests check it validates against the schema model)."""
    return {
        "type": "job",
        "job_id": job_id,
        "kind": kind,
        "model": model,
        "stream": stream,
        "body": body,
    }


class RawChunks:
    """Stream chunks passed through as bytes: what a backend read or a worker's `chunks`
    frame carried at once. `events` are the chunks' JSON texts exactly as the upstream wrote
    them; the gateway only frames them as SSE (`data: …` + blank line), in one write.
    `tokens` is what they count toward the job; `usage` is true when one of them is the
    usage chunk (so the gateway does not make one of its own)."""

    __slots__ = ("events", "job_id", "tokens", "usage")

    def __init__(self, job_id: str, events: list[bytes], tokens: int, usage: bool = False):
        self.job_id = job_id
        self.events = events
        self.tokens = tokens
        self.usage = usage

    def sse(self) -> bytes:
        return b"".join([b"data: " + event + b"\n\n" for event in self.events])


class RawResult:
    """An embeddings answer kept as the upstream's bytes: `count` vectors (counted, not
    parsed), the `model` it names and its usage. The embeddings path sends it on as it is
    when it is the whole answer to the request; otherwise it parses it (`data`)."""

    __slots__ = ("count", "job_id", "model", "raw", "usage")

    def __init__(
        self, job_id: str, raw: bytes, count: int, model: str | None, usage: Usage | None
    ) -> None:
        self.job_id = job_id
        self.raw = raw
        self.count = count
        self.model = model
        self.usage = usage

    @property
    def data(self) -> dict[str, Any] | None:
        parsed = codec.loads(self.raw)
        return parsed if isinstance(parsed, dict) else None
