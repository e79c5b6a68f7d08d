"""The worker protocol spoken over `WS /api/workers/connect` (documented in docs/protocol.md).

Every frame is one JSON text message with a `type`. A worker registers first, then sends
heartbeats, status reports and job traffic; the gateway sends jobs, cancels and drain notices.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter

from gatewaytui.schema.state import HostInfo, WireModel

PROTOCOL_VERSION = 1

# Close codes the gateway uses (1008 is the RFC 6455 policy-violation code).
CLOSE_POLICY_VIOLATION = 1008
CLOSE_DUPLICATE_ID = 4009
CLOSE_EVICTED = 4008
CLOSE_SERVER_SHUTDOWN = 1001

# ---- worker -> gateway ------------------------------------------------------------------


class RegisterFrame(WireModel):
    type: Literal["register"] = "register"
    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@/-]+$")
    name: str = Field(default="", max_length=256)
    models: list[str] = Field(default_factory=list, max_length=512)
    max_concurrency: int = Field(default=1, ge=0, le=100_000)
    preferred_batch_size: int = Field(default=32, ge=1, le=100_000)
    version: str = Field(default="", max_length=128)
    host: HostInfo = Field(default_factory=HostInfo)
    labels: dict[str, str] = Field(default_factory=dict)
    protocol: int = PROTOCOL_VERSION


class HeartbeatFrame(WireModel):
    type: Literal["heartbeat"] = "heartbeat"
    cpu_percent: float | None = Field(default=None, ge=0, le=100_000)
    mem_percent: float | None = Field(default=None, ge=0, le=100)


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


class Usage(WireModel):
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    total_tokens: int = Field(default=0, ge=0)


class ResultFrame(WireModel):
    """The end of a job. For non-streaming jobs `data` is the full OpenAI response body."""

    type: Literal["result"] = "result"
    job_id: str
    data: dict[str, Any] | None = None
    usage: Usage | None = None


class ErrorFrame(WireModel):
    type: Literal["error"] = "error"
    job_id: str
    message: str = Field(max_length=4096)
    status: int = Field(default=502, ge=400, le=599)
    code: str | None = None
    retryable: bool = False  # true: the job may run on another worker (e.g. over capacity)


WorkerFrame = Annotated[
    RegisterFrame | HeartbeatFrame | StatusFrame | ChunkFrame | ResultFrame | ErrorFrame,
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


GatewayFrame = Annotated[
    RegisteredFrame | JobFrame | CancelFrame | DrainFrame, Field(discriminator="type")
]
GATEWAY_FRAME_ADAPTER: TypeAdapter[GatewayFrame] = TypeAdapter(GatewayFrame)


def protocol_json_schema() -> dict[str, Any]:
    """The published JSON Schema of both directions (docs/protocol.schema.json)."""
    return {
        "worker_to_gateway": WORKER_FRAME_ADAPTER.json_schema(),
        "gateway_to_worker": GATEWAY_FRAME_ADAPTER.json_schema(),
    }
