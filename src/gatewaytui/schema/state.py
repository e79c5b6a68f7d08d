"""The gateway's state as served by `GET /api/state` and stored in `sample_state.json`.

Field names follow the JSON tags of the gateway SPI seed where it gives them (MCP client and
session snapshots, worker statuses); everything else is ours and documented in docs/.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from gatewaytui.schema.history import SnapshotHistory
from gatewaytui.schema.wire import WireModel

SCHEMA_VERSION = 1


class WorkerStatus(StrEnum):
    """Worker statuses: the SPI's `WorkerStatus` values, plus `unresponsive` (the gateway's
    own finding: connected and heartbeating, but its jobs go unanswered; out of routing)."""

    CONNECTED = "connected"
    WORKING = "working"
    IDLE = "idle"
    NOT_READY = "not_ready"
    UNRESPONSIVE = "unresponsive"
    DRAINING = "draining"
    GONE = "gone"


class ServerStatus(StrEnum):
    READY = "ready"
    NOT_READY = "not_ready"
    DRAINING = "draining"


class HostInfo(WireModel):
    """What a worker says about the machine it runs on."""

    hostname: str = ""
    os: str = ""
    arch: str = ""
    cpu_count: int | None = None
    mem_total_mb: int | None = None
    gpu: str | None = None
    python: str | None = None


class GpuStats(WireModel):
    """One GPU of a worker's machine, as NVML reports it (a field NVML cannot read is null)."""

    index: int = Field(default=0, ge=0)
    name: str = Field(default="", max_length=256)
    util_percent: float | None = Field(default=None, ge=0, le=100)
    mem_used_mb: int | None = Field(default=None, ge=0)
    mem_total_mb: int | None = Field(default=None, ge=0)
    temperature_c: float | None = Field(default=None, ge=-50, le=200)
    power_w: float | None = Field(default=None, ge=0)
    power_limit_w: float | None = Field(default=None, ge=0)


class ModelCounters(WireModel):
    """Per-model counters of one worker."""

    requests: int = 0
    failures: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    embeddings: int = 0


class WorkerSnapshot(WireModel):
    """One worker as the gateway sees it. Counters survive a reconnect of the same id."""

    id: str
    name: str
    status: WorkerStatus
    status_reason: str | None = None
    models: list[str] = Field(default_factory=list)
    max_concurrency: int = 1
    preferred_batch_size: int = 1
    inflight: int = 0
    version: str = ""
    host: HostInfo = Field(default_factory=HostInfo)
    labels: dict[str, str] = Field(default_factory=dict)
    remote_addr: str | None = None
    connected_at: datetime | None = None
    last_heartbeat: datetime | None = None
    gone_at: datetime | None = None
    draining: bool = False
    drain_started_at: datetime | None = None
    cpu_percent: float | None = None
    mem_percent: float | None = None
    gpus: list[GpuStats] = Field(
        default_factory=list,
        description="The machine's GPUs from the last heartbeat that reported them (NVML); "
        "empty without GPUs, without NVML, or from a worker that does not report them.",
    )
    processed: int = 0
    failures: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    embeddings: int = 0
    avg_processing_ms: float = 0.0
    per_model: dict[str, ModelCounters] = Field(default_factory=dict)
    last_error: str | None = None
    last_error_at: datetime | None = None
    reconnects: int = 0
    replica: str | None = Field(
        default=None, description="The fleet replica holding its connection (clustered only)."
    )


class JobKind(StrEnum):
    CHAT = "chat"
    EMBEDDINGS = "embeddings"
    MCP = "mcp"


class PartitionProgress(WireModel):
    """Progress of a partitioned job (embeddings split across workers)."""

    total_items: int
    done_items: int = 0
    chunks_done: int = 0
    chunks_inflight: int = 0
    chunks_failed: int = 0


class JobSnapshot(WireModel):
    """An in-flight job."""

    id: str
    kind: JobKind
    model: str
    worker: str | None = None
    workers: list[str] = Field(default_factory=list)
    backend: str | None = None
    state: Literal["queued", "running", "cancelling"] = "running"
    started_at: datetime
    stream: bool = False
    tokens_in: int = 0
    tokens_out: int = 0
    attempt: int = 1
    partition: PartitionProgress | None = None
    client: str | None = None
    replica: str | None = Field(
        default=None, description="The fleet replica running it (clustered only)."
    )


class ModelSummary(WireModel):
    """Capacity of one model across its workers and backends, derived by the gateway.

    `capacity` sums the max concurrency of the ready workers and the backends in routing."""

    id: str
    workers: int = 0
    ready_workers: int = 0
    backends: int = Field(default=0, description="Enabled backends serving the model.")
    ready_backends: int = Field(default=0, description="Those of them in routing.")
    capacity: int = 0
    inflight: int = 0
    queued: int = 0
    owned_by: list[str] = Field(default_factory=list)


class MCPClientSnapshot(WireModel):
    """A relayed MCP server (`id,name,status,inflight,functions` are the SPI's tags).

    `status` is `idle`, `working`, `not_ready` (the relay cannot reach its server; see
    `status_reason`) or `gone`. Counters survive a reconnect of the same id.
    """

    id: str
    name: str
    status: str
    inflight: int = 0
    functions: dict[str, int] = Field(default_factory=dict)
    connected_at: datetime | None = None
    server_name: str | None = None
    server_version: str | None = None
    capabilities: list[str] = Field(default_factory=list)
    calls: int = 0
    errors: int = 0
    errors_by_method: dict[str, int] = Field(default_factory=dict)
    last_error: str | None = None
    server_title: str | None = None
    protocol_version: str | None = None
    status_reason: str | None = None
    transport: str | None = None
    token_required: bool = False
    max_concurrency: int = 0
    remote_addr: str | None = None
    last_heartbeat: datetime | None = None
    gone_at: datetime | None = None
    last_error_at: datetime | None = None
    rejected: int = 0
    reconnects: int = 0
    replica: str | None = Field(
        default=None, description="The fleet replica holding its relay (clustered only)."
    )


class MCPSessionSnapshot(WireModel):
    """One in-flight MCP call (`id,client_id,method,started_at,duration_ms` per the SPI).

    `target` is what the call is about (the tool, resource URI or prompt), `stream` whether
    its answer is being streamed, `client` the MCP client's address.
    """

    id: str
    client_id: str
    method: str
    started_at: datetime
    duration_ms: int = 0
    target: str | None = None
    stream: bool = False
    client: str | None = None


class MCPState(WireModel):
    clients: list[MCPClientSnapshot] = Field(default_factory=list)
    sessions: list[MCPSessionSnapshot] = Field(default_factory=list)


class BackendStatus(StrEnum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"


class BackendModelInfo(WireModel):
    """A model declared for a backend, as served (the input form is `DeclaredModel`)."""

    name: str
    capabilities: list[str] = Field(default_factory=list)
    context_length: int = 0
    max_output_tokens: int = 0
    embedding_dimension: int | None = None
    token_modifier: float = 1.0


class BackendSnapshot(WireModel):
    """An operator-defined OpenAI-compatible endpoint: its spec and its live health.

    Never carries its key: `api_key_set` says whether one is stored and `api_key_env` names
    the environment variable of an `env:VAR` reference.
    """

    id: str
    type: str = "openai"
    url: str
    enabled: bool = True
    api_key_set: bool = False
    api_key_env: str | None = None
    include_models: list[str] = Field(default_factory=list)
    exclude_models: list[str] = Field(default_factory=list)
    declared_models: list[BackendModelInfo] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = 60.0
    max_concurrency: int = 8
    batch_size: int = 64
    status: BackendStatus = BackendStatus.UNKNOWN
    routing: bool = False
    models: list[str] = Field(default_factory=list)
    discovered_models: list[str] = Field(default_factory=list)
    latency_ms: float | None = None
    last_probe_at: datetime | None = None
    last_ok_at: datetime | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    next_retry_at: datetime | None = None
    inflight: int = 0
    requests: int = 0
    failures: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    embeddings: int = 0
    revision: int = 1
    updated_at: datetime | None = None


class ArgType(StrEnum):
    STRING = "string"
    INT = "int"
    BOOL = "bool"
    NUMBER = "number"
    DURATION = "duration"


class ArgSpec(WireModel):
    """One configurable parameter of a plugin (the SPI's ArgSpec)."""

    id: str
    flag: str
    env: str
    yaml: str
    type: ArgType
    default: str = ""
    example: str = ""
    description: str = ""
    deprecated: bool = False
    replacement: str = ""
    secret: bool = False
    choices: list[str] = Field(
        default_factory=list, description="the values it may take, where it is one of a set"
    )


OptionSource = Literal["flag", "env", "yaml", "default"]


class ArgState(ArgSpec):
    """An ArgSpec plus what is in effect and where it came from. Secrets show only set/unset."""

    value: str | None = None
    source: OptionSource = "default"
    is_set: bool = False


class PluginDescriptor(WireModel):
    """Human-readable metadata for one configurable part of the gateway (the SPI's)."""

    id: str
    name: str
    summary: str = ""
    args: list[ArgSpec] = Field(default_factory=list)


class PluginState(WireModel):
    """A descriptor as served by `GET /api/plugins` and in state: each arg with its value."""

    id: str
    name: str
    summary: str = ""
    args: list[ArgState] = Field(default_factory=list)


class EventLevel(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class EventRecord(WireModel):
    """One entry of the gateway's bounded event log."""

    id: int
    ts: datetime
    kind: str
    level: EventLevel = EventLevel.INFO
    message: str
    worker_id: str | None = None
    job_id: str | None = None
    replica: str | None = Field(
        default=None, description="The fleet replica it happened on (clustered only)."
    )


ClusterStatus = Literal["off", "ok", "degraded"]


class QueueInfo(WireModel):
    length: int = 0
    capacity: int = 0


class ServerSnapshot(WireModel):
    """The gateway process itself."""

    version: str
    status: ServerStatus
    status_reason: str | None = None
    started_at: datetime
    listen: str = ""
    draining: bool = False
    drain_started_at: datetime | None = None
    drain_deadline: datetime | None = None
    inflight: int = 0
    queue: QueueInfo = Field(default_factory=QueueInfo)
    scheduler: str = "least-busy"
    read_only: bool = False
    requests_total: int = 0
    tokens_in_total: int = 0
    tokens_out_total: int = 0
    embeddings_total: int = 0
    cluster: ClusterStatus = Field(
        default="off",
        description="`off` (a single node), `ok` (in a fleet, Redis reachable) or `degraded` "
        "(Redis unreachable: this replica serves its own workers and backends).",
    )
    replica: str | None = Field(default=None, description="This replica's id (clustered only).")


class ReplicaSnapshot(WireModel):
    """One gateway replica of a fleet, as registered in Redis (docs/cluster.md)."""

    id: str
    advertise_url: str = ""
    status: str = Field(
        default="ready",
        description="`ready`, `not_ready`, `draining`, `degraded` (its Redis link is down) "
        "or `gone` (its registration expired).",
    )
    started_at: datetime | None = None
    last_seen: datetime | None = None
    workers: int = Field(default=0, description="Workers connected to it (not gone).")
    jobs: int = Field(default=0, description="Jobs in flight on it.")
    capacity: int = Field(default=0, description="Slots of its ready workers.")
    inflight: int = Field(default=0, description="Of those slots, the ones in use.")
    draining: bool = False
    version: str = ""
    local: bool = Field(default=False, description="This is the replica serving the state.")


class GatewayState(WireModel):
    """The whole state: `GET /api/state`, the first frame of the stream, a saved snapshot."""

    schema_version: int = SCHEMA_VERSION
    generated_at: datetime
    seq: int = 0
    server: ServerSnapshot
    workers: list[WorkerSnapshot] = Field(default_factory=list)
    jobs: list[JobSnapshot] = Field(default_factory=list)
    models: list[ModelSummary] = Field(default_factory=list)
    mcp: MCPState = Field(default_factory=MCPState)
    backends: list[BackendSnapshot] = Field(default_factory=list)
    plugins: list[PluginState] = Field(default_factory=list)
    events: list[EventRecord] = Field(default_factory=list)
    replicas: list[ReplicaSnapshot] = Field(
        default_factory=list, description="The fleet's replicas (empty for a single node)."
    )
    history: SnapshotHistory | None = Field(
        None,
        description="Only in a saved snapshot: the recent history the panel read when it "
        "saved the file (absent when the gateway keeps none).",
    )


def state_json_schema() -> dict[str, Any]:
    """The published JSON Schema of `GatewayState` (docs/state.schema.json)."""
    return GatewayState.model_json_schema()
