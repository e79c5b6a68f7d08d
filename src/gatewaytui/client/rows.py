"""The store's items as typed dicts: the rows a UI reads, field by field.

The store keeps the plain dicts that came off the wire (no model per item on the hot path);
these `TypedDict`s give them the wire's field names and JSON types (timestamps are ISO-8601
strings, enums their string values), so a reader's `row["inflight"]` or `row.get("gone_at")`
is checked. Each mirrors a model of `gatewaytui.schema.state` (a test keeps their fields the
same); only the id is always there: a delta may have patched in any subset of the rest.
"""

from typing import Any, Literal, Required, TypedDict


class HostRow(TypedDict, total=False):
    hostname: str
    os: str
    arch: str
    cpu_count: int | None
    mem_total_mb: int | None
    gpu: str | None
    python: str | None


class ModelCountersRow(TypedDict, total=False):
    requests: int
    failures: int
    tokens_in: int
    tokens_out: int
    embeddings: int


class WorkerRow(TypedDict, total=False):
    """`schema.state.WorkerSnapshot`."""

    id: Required[str]
    name: str
    status: str
    status_reason: str | None
    models: list[str]
    max_concurrency: int
    preferred_batch_size: int
    inflight: int
    version: str
    host: HostRow
    labels: dict[str, str]
    remote_addr: str | None
    connected_at: str | None
    last_heartbeat: str | None
    gone_at: str | None
    draining: bool
    drain_started_at: str | None
    cpu_percent: float | None
    mem_percent: float | None
    gpus: list[dict[str, Any]]
    processed: int
    failures: int
    tokens_in: int
    tokens_out: int
    embeddings: int
    avg_processing_ms: float
    per_model: dict[str, ModelCountersRow]
    last_error: str | None
    last_error_at: str | None
    reconnects: int
    replica: str | None  # the fleet replica holding its connection (clustered only)


class PartitionRow(TypedDict, total=False):
    total_items: int
    done_items: int
    chunks_done: int
    chunks_inflight: int
    chunks_failed: int


class JobRow(TypedDict, total=False):
    """`schema.state.JobSnapshot`."""

    id: Required[str]
    kind: str
    model: str
    worker: str | None
    workers: list[str]
    backend: str | None
    state: Literal["queued", "running", "cancelling"]
    started_at: str
    stream: bool
    tokens_in: int
    tokens_out: int
    attempt: int
    partition: PartitionRow | None
    client: str | None
    replica: str | None  # the fleet replica running it (clustered only)


class BackendRow(TypedDict, total=False):
    """`schema.state.BackendSnapshot` (never the key: only whether one is set)."""

    id: Required[str]
    type: str
    url: str
    enabled: bool
    api_key_set: bool
    api_key_env: str | None
    include_models: list[str]
    exclude_models: list[str]
    declared_models: list[dict[str, Any]]
    labels: dict[str, str]
    timeout_s: float
    max_concurrency: int
    batch_size: int
    status: str
    routing: bool
    models: list[str]
    discovered_models: list[str]
    latency_ms: float | None
    last_probe_at: str | None
    last_ok_at: str | None
    last_error: str | None
    consecutive_failures: int
    next_retry_at: str | None
    inflight: int
    requests: int
    failures: int
    tokens_in: int
    tokens_out: int
    embeddings: int
    revision: int
    updated_at: str | None


class MCPClientRow(TypedDict, total=False):
    """`schema.state.MCPClientSnapshot`: an MCP server's relay and what it serves."""

    id: Required[str]
    name: str
    status: str
    inflight: int
    functions: dict[str, int]
    connected_at: str | None
    server_name: str | None
    server_version: str | None
    capabilities: list[str]
    calls: int
    errors: int
    errors_by_method: dict[str, int]
    last_error: str | None
    server_title: str | None
    protocol_version: str | None
    status_reason: str | None
    transport: str | None
    token_required: bool
    max_concurrency: int
    remote_addr: str | None
    last_heartbeat: str | None
    gone_at: str | None
    last_error_at: str | None
    rejected: int
    reconnects: int
    replica: str | None  # the fleet replica holding its relay (clustered only)


class MCPSessionRow(TypedDict, total=False):
    """`schema.state.MCPSessionSnapshot`: one MCP call in flight."""

    id: Required[str]
    client_id: str
    method: str
    started_at: str
    duration_ms: int
    target: str | None
    stream: bool
    client: str | None


ROW_TYPES: dict[str, type] = {
    "workers": WorkerRow,
    "jobs": JobRow,
    "backends": BackendRow,
    "mcp_clients": MCPClientRow,
    "mcp_sessions": MCPSessionRow,
}
"""Store collection -> its row type."""
