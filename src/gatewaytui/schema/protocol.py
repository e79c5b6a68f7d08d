"""The worker protocol spoken over `WS /api/workers/connect` (documented in docs/protocol.md).

Every frame is one JSON text message with a `type`. A worker registers first, then sends
heartbeats, status reports and job traffic; the gateway sends jobs, cancels and drain notices.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter

from gatewaytui.schema.ids import WORKER_ID_MAX_LENGTH, WORKER_ID_PATTERN
from gatewaytui.schema.state import GpuStats, HostInfo
from gatewaytui.schema.wire import WireModel

PROTOCOL_VERSION = 1

# Close codes the gateway uses (1008 is the RFC 6455 policy-violation code).
CLOSE_POLICY_VIOLATION = 1008
CLOSE_DUPLICATE_ID = 4009
CLOSE_EVICTED = 4008
CLOSE_SERVER_SHUTDOWN = 1001

# What a worker can do beyond the basic protocol, listed in `register.features`. A worker that
# does not list a feature (an older one) is never sent that feature's frames.
FEATURE_LOGS = "logs"  # answers logs_request / logs_stop
# Sends `accepted` as soon as it starts a non-streaming chat job (both sides list it: a worker
# in `register.features`, a gateway in `registered.features`). Only then is a non-streaming
# chat's acknowledgement due within workers.first_frame_timeout (a hung worker is noticed);
# a worker that does not list it keeps protocol 1's behaviour (its answer may take as long
# as the request timeout).
FEATURE_ACCEPTED = "accepted"

LOG_LINE_MAX_CHARS = 2000  # a longer log message is cut (with an ellipsis) by the worker
LOG_FRAME_MAX_LINES = 500  # log lines per frame; a bigger snapshot spans several frames

# ---- worker -> gateway ------------------------------------------------------------------


class RegisterFrame(WireModel):
    type: Literal["register"] = "register"
    id: str = Field(min_length=1, max_length=WORKER_ID_MAX_LENGTH, pattern=WORKER_ID_PATTERN)
    name: str = Field(default="", max_length=256)
    models: list[str] = Field(default_factory=list, max_length=512)
    max_concurrency: int = Field(default=1, ge=0, le=100_000)
    preferred_batch_size: int = Field(default=32, ge=1, le=100_000)
    version: str = Field(default="", max_length=128)
    host: HostInfo = Field(default_factory=HostInfo)
    labels: dict[str, str] = Field(default_factory=dict)
    protocol: int = PROTOCOL_VERSION
    features: list[str] = Field(default_factory=list, max_length=32)


class HeartbeatFrame(WireModel):
    type: Literal["heartbeat"] = "heartbeat"
    cpu_percent: float | None = Field(default=None, ge=0, le=100_000)
    mem_percent: float | None = Field(default=None, ge=0, le=100)
    gpus: list[GpuStats] | None = Field(default=None, max_length=64)  # None: not reported


class StatusFrame(WireModel):
    """A worker's own report: ready or not (and why), draining itself, models changed."""

    type: Literal["status"] = "status"
    ready: bool | None = None  # None: unchanged (e.g. a frame that only updates models)
    reason: str | None = Field(default=None, max_length=1024)
    draining: bool | None = None
    models: list[str] | None = Field(default=None, max_length=512)
    max_concurrency: int | None = Field(default=None, ge=0, le=100_000)


class ChunkFrame(WireModel):
    """One streamed piece of a job: `data` is an OpenAI chat.completion.chunk object."""

    type: Literal["chunk"] = "chunk"
    job_id: str
    data: dict[str, Any]
    tokens: int = Field(default=1, ge=0)


class ChunksFrame(WireModel):
    """Streamed pieces of a job that arrived together, passed on as the upstream wrote them:
    each item of `chunks` is the JSON text of one chat.completion.chunk object (the gateway
    frames each as one SSE event and sends them in one write; it does not re-encode them).
    `tokens` counts all of them; `usage` is true when one of them is the usage chunk the
    client asked for. Sent only to a gateway whose `registered.features` lists "chunks";
    `chunk` frames stay valid."""

    type: Literal["chunks"] = "chunks"
    job_id: str
    chunks: list[str] = Field(min_length=1)
    tokens: int = Field(default=0, ge=0)
    usage: bool = False


FEATURE_CHUNKS = "chunks"  # the gateway accepts `chunks` frames
FEATURE_RAW_RESULTS = "raw_results"  # the gateway accepts `result.raw` for embeddings


class AcceptedFrame(WireModel):
    """The worker has started a job (sent at once, before any answer). Only between a worker
    and a gateway that both list the "accepted" feature; see FEATURE_ACCEPTED."""

    type: Literal["accepted"] = "accepted"
    job_id: str


class Usage(WireModel):
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    total_tokens: int = Field(default=0, ge=0)


class ResultFrame(WireModel):
    """The end of a job. For non-streaming jobs `data` is the full OpenAI response body —
    or, for embeddings to a gateway whose `registered.features` lists "raw_results", `raw`:
    the upstream's body as text, unchanged (the gateway passes it on without parsing the
    vectors; `usage` must then be given)."""

    type: Literal["result"] = "result"
    job_id: str
    data: dict[str, Any] | None = None
    usage: Usage | None = None
    raw: str | None = None


class ErrorFrame(WireModel):
    type: Literal["error"] = "error"
    job_id: str
    message: str = Field(max_length=4096)
    status: int = Field(default=502, ge=400, le=599)
    code: str | None = None
    retryable: bool = False  # true: the job may run on another worker (e.g. over capacity)


class LogLine(WireModel):
    """One line of a worker's own log, secrets already redacted by the worker."""

    ts: float = Field(description="Unix time, seconds.")
    level: str = Field(default="INFO", max_length=16)
    logger: str = Field(default="", max_length=256)
    message: str = Field(default="", max_length=LOG_LINE_MAX_CHARS)


class LogsFrame(WireModel):
    """Log lines for one `logs_request`, sent only when asked.

    The snapshot (the last `tail` lines) comes first, in one or more frames, the last of
    which has `snapshot_done`; with `follow`, later frames carry new lines as they are
    logged. `dropped` counts lines skipped because the connection fell behind; `ended`
    closes the request (e.g. too many followers, `error` says why)."""

    type: Literal["logs"] = "logs"
    request_id: str = Field(min_length=1, max_length=64)
    lines: list[LogLine] = Field(default_factory=list, max_length=LOG_FRAME_MAX_LINES)
    snapshot_done: bool = False
    dropped: int = Field(default=0, ge=0)
    ended: bool = False
    error: str | None = Field(default=None, max_length=1024)


WorkerFrame = Annotated[
    RegisterFrame
    | HeartbeatFrame
    | StatusFrame
    | AcceptedFrame
    | ChunkFrame
    | ChunksFrame
    | ResultFrame
    | ErrorFrame
    | LogsFrame,
    Field(discriminator="type"),
]
WORKER_FRAME_ADAPTER: TypeAdapter[WorkerFrame] = TypeAdapter(WorkerFrame)

# ---- gateway -> worker ------------------------------------------------------------------


class RegisteredFrame(WireModel):
    type: Literal["registered"] = "registered"
    worker_id: str
    heartbeat_interval_s: float
    heartbeat_expiry_s: float
    max_frame_bytes: int
    draining: bool = False
    # What this gateway accepts beyond protocol 1's frames (e.g. "chunks"); older gateways
    # send none, and a worker then keeps to `chunk` frames.
    features: list[str] = Field(default_factory=list)


class JobFrame(WireModel):
    """A job for the worker. `kind` chat: `body` is a chat.completions request; embeddings:
    an embeddings request whose `input` is this worker's slice."""

    type: Literal["job"] = "job"
    job_id: str
    kind: Literal["chat", "embeddings"]
    model: str
    stream: bool = False
    body: dict[str, Any]


class CancelFrame(WireModel):
    type: Literal["cancel"] = "cancel"
    job_id: str
    reason: str = ""


class DrainFrame(WireModel):
    """Tells the worker the operator drained (or undrained) it; informational."""

    type: Literal["drain"] = "drain"
    draining: bool


class LogsRequestFrame(WireModel):
    """Asks the worker for its recent log lines (and, with `follow`, new ones until a
    `logs_stop`). A worker without log support cannot parse it and answers nothing, so the
    gateway reports such a worker after a short wait."""

    type: Literal["logs_request"] = "logs_request"
    request_id: str = Field(min_length=1, max_length=64)
    tail: int = Field(default=200, ge=0, le=10_000)
    follow: bool = False


class LogsStopFrame(WireModel):
    """Ends a followed `logs_request` (the operator closed the view)."""

    type: Literal["logs_stop"] = "logs_stop"
    request_id: str = Field(min_length=1, max_length=64)


GatewayFrame = Annotated[
    RegisteredFrame | JobFrame | CancelFrame | DrainFrame | LogsRequestFrame | LogsStopFrame,
    Field(discriminator="type"),
]
GATEWAY_FRAME_ADAPTER: TypeAdapter[GatewayFrame] = TypeAdapter(GatewayFrame)


def protocol_json_schema() -> dict[str, Any]:
    """The published JSON Schema of both directions (docs/protocol.schema.json)."""
    return {
        "worker_to_gateway": WORKER_FRAME_ADAPTER.json_schema(),
        "gateway_to_worker": GATEWAY_FRAME_ADAPTER.json_schema(),
    }
