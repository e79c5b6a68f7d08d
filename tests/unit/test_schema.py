"""The published schemas, the sample snapshot and the worker protocol frames."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gatewaytui.schema import GatewayState, JobKind, WorkerStatus, state_json_schema
from gatewaytui.schema.mcp_protocol import (
    GATEWAY_RELAY_FRAME_ADAPTER,
    RELAY_FRAME_ADAPTER,
    mcp_protocol_json_schema,
)
from gatewaytui.schema.protocol import (
    GATEWAY_FRAME_ADAPTER,
    WORKER_FRAME_ADAPTER,
    AcceptedFrame,
    CancelFrame,
    ChunkFrame,
    ChunksFrame,
    DrainFrame,
    ErrorFrame,
    HeartbeatFrame,
    JobFrame,
    LogsFrame,
    LogsRequestFrame,
    LogsStopFrame,
    RegisteredFrame,
    RegisterFrame,
    ResultFrame,
    StatusFrame,
)
from gatewaytui.schema.stream import STREAM_MESSAGE_ADAPTER
from support.paths import DOCS, REPO, SAMPLE

REGENERATE = "regenerate with `gatewaytui schema --write`"
SERVING = {WorkerStatus.CONNECTED, WorkerStatus.IDLE, WorkerStatus.WORKING}


def _dump(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2) + "\n"


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return json.loads(SAMPLE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def state(raw: dict[str, Any]) -> GatewayState:
    return GatewayState.model_validate(raw)


# ---- published JSON Schemas --------------------------------------------------------------


def test_state_schema_file_is_current() -> None:
    path = DOCS / "state.schema.json"
    assert path.exists(), f"{path} is missing; {REGENERATE}"
    assert path.read_text(encoding="utf-8") == _dump(state_json_schema()), (
        f"{path} is out of date with gatewaytui.schema.state; {REGENERATE}"
    )


def test_protocol_schema_file_is_current() -> None:
    path = DOCS / "protocol.schema.json"
    expected = {
        "worker_to_gateway": WORKER_FRAME_ADAPTER.json_schema(),
        "gateway_to_worker": GATEWAY_FRAME_ADAPTER.json_schema(),
    }
    assert path.exists(), f"{path} is missing; {REGENERATE}"
    assert path.read_text(encoding="utf-8") == _dump(expected), (
        f"{path} is out of date with gatewaytui.schema.protocol; {REGENERATE}"
    )


# ---- sample_state.json -------------------------------------------------------------------


def test_sample_validates(state: GatewayState) -> None:
    assert state.schema_version == 1
    assert state.server.version


def test_sample_has_no_unknown_fields(raw: dict[str, Any]) -> None:
    """Models keep extra fields; the sample must not rely on that (a typo would pass)."""

    def extras(model: Any, where: str) -> list[str]:
        found = [f"{where}.{k}" for k in (model.model_extra or {})]
        for name in type(model).model_fields:
            value = getattr(model, name)
            items = (
                value.items()
                if isinstance(value, dict)
                else enumerate(value if isinstance(value, list) else [value])
            )
            for key, item in items:
                if hasattr(item, "model_extra"):
                    found += extras(item, f"{where}.{name}[{key}]")
        return found

    assert extras(GatewayState.model_validate(raw), "state") == []


def test_sample_has_every_worker_status(state: GatewayState) -> None:
    assert {w.status for w in state.workers} == set(WorkerStatus)
    not_ready = [w for w in state.workers if w.status is WorkerStatus.NOT_READY]
    assert all(w.status_reason for w in not_ready)


def test_sample_draining_and_gone_workers(state: GatewayState) -> None:
    draining = [w for w in state.workers if w.status is WorkerStatus.DRAINING]
    assert any(w.inflight > 0 for w in draining)
    assert all(w.draining for w in draining)
    assert any(w.drain_started_at is not None for w in draining), "no operator-drained worker"
    gone = [w for w in state.workers if w.status is WorkerStatus.GONE]
    assert gone
    assert all(w.gone_at is not None and w.inflight == 0 for w in gone)
    assert all(w.gone_at is None for w in state.workers if w.status is not WorkerStatus.GONE)


def test_sample_worker_counters_add_up(state: GatewayState) -> None:
    for w in state.workers:
        per_model = w.per_model.values()
        assert sum(m.requests for m in per_model) == w.processed + w.failures, w.id
        assert sum(m.failures for m in per_model) == w.failures, w.id
        assert sum(m.tokens_in for m in per_model) == w.tokens_in, w.id
        assert sum(m.tokens_out for m in per_model) == w.tokens_out, w.id
        assert sum(m.embeddings for m in per_model) == w.embeddings, w.id
        assert set(w.per_model) <= set(w.models), w.id


def test_sample_timestamps_are_utc_milliseconds(raw: dict[str, Any]) -> None:
    def walk(value: Any, key: str = "") -> list[tuple[str, str]]:
        if isinstance(value, dict):
            return [s for k, v in value.items() for s in walk(v, k)]
        if isinstance(value, list):
            return [s for v in value for s in walk(v, key)]
        if isinstance(value, str) and (key.endswith("_at") or key in {"ts", "last_heartbeat"}):
            return [(key, value)]
        return []

    stamps = walk(raw)
    assert len(stamps) > 30
    future = {"next_retry_at", "drain_deadline"}
    for key, stamp in stamps:
        assert len(stamp) == 24 and stamp[10] == "T" and stamp[19] == "." and stamp[-1] == "Z"
        assert key in future or stamp <= raw["generated_at"], f"{key}={stamp} is in the future"


def test_sample_models_summary_matches_workers_and_backends(state: GatewayState) -> None:
    """Recompute the summary as the gateway derives it: non-gone workers only, ready and
    capacity from serving ones; enabled backends as `backend:<id>` owners, adding capacity
    while in routing; in-flight from the running jobs (one per chat, one per embeddings
    chunk in flight)."""
    expected: dict[str, dict[str, Any]] = {}

    def entry(model: str) -> dict[str, Any]:
        return expected.setdefault(
            model, {"workers": 0, "ready_workers": 0, "capacity": 0, "inflight": 0, "owned_by": []}
        )

    for w in state.workers:
        if w.status is WorkerStatus.GONE:
            continue
        for model in w.models:
            m = entry(model)
            m["workers"] += 1
            m["owned_by"].append(w.id)
            if w.status in SERVING:
                m["ready_workers"] += 1
                m["capacity"] += w.max_concurrency
    for b in state.backends:
        for model in b.models if b.enabled else ():
            m = entry(model)
            m["owned_by"].append(f"backend:{b.id}")
            m["capacity"] += b.max_concurrency if b.routing else 0
    for job in state.jobs:
        if job.state != "queued" and (job.worker or job.backend) and job.model in expected:
            expected[job.model]["inflight"] += job.partition.chunks_inflight if job.partition else 1
    queued = Counter(j.model for j in state.jobs if j.state == "queued")
    assert len(state.models) >= 3
    assert [m.id for m in state.models] == list(expected)
    for m in state.models:
        got = m.model_dump(include={"workers", "ready_workers", "capacity", "inflight", "owned_by"})
        assert got == expected[m.id], m.id
        assert m.queued == queued[m.id], m.id
    assert state.server.queue.length == sum(queued.values())
    assert state.server.queue.length <= state.server.queue.capacity


def test_sample_jobs_match_workers(state: GatewayState) -> None:
    workers = {w.id: w for w in state.workers}
    assert state.server.inflight == len(state.jobs)
    assert len({j.id for j in state.jobs}) == len(state.jobs)
    slots = Counter(j.worker for j in state.jobs if j.kind is JobKind.CHAT and j.worker)
    for job in state.jobs:
        if job.state == "queued":
            assert job.worker is None and not job.workers, job.id
        elif job.backend is None:
            assert job.worker in workers and job.worker in job.workers, job.id
    chunks = sum(j.partition.chunks_inflight for j in state.jobs if j.partition)
    assert sum(w.inflight for w in state.workers) == sum(slots.values()) + chunks
    for worker_id, n in slots.items():
        assert workers[worker_id].inflight >= n, worker_id
    assert any(j.stream for j in state.jobs) and any(not j.stream for j in state.jobs)
    assert any(j.attempt > 1 and len(j.workers) > 1 for j in state.jobs), "no retried job"


def test_sample_has_partitioned_embeddings_job(state: GatewayState) -> None:
    jobs = [j for j in state.jobs if j.kind is JobKind.EMBEDDINGS and j.partition is not None]
    assert jobs
    job = jobs[0]
    p = job.partition
    assert p is not None
    assert 0 < p.done_items < p.total_items
    assert p.chunks_inflight > 0
    assert len(job.workers) >= 3


def test_sample_mcp_clients_and_sessions(state: GatewayState) -> None:
    clients = state.mcp.clients
    assert {c.status for c in clients} == {"working", "idle", "not_ready"}
    assert {c.transport for c in clients} == {"stdio", "http"}
    sessions = Counter(s.client_id for s in state.mcp.sessions)
    for client in clients:
        assert client.functions and client.server_name and client.capabilities, client.id
        assert client.inflight == sessions[client.id], client.id
        assert (client.status == "working") == (client.inflight > 0), client.id
        assert (client.status == "not_ready") == bool(client.status_reason), client.id
        assert client.calls == sum(client.functions.values()), client.id
        assert client.errors == sum(client.errors_by_method.values()), client.id
        assert set(client.errors_by_method) <= set(client.functions), client.id
    assert set(sessions) <= {c.id for c in clients}
    assert all(s.started_at <= state.generated_at for s in state.mcp.sessions)


def test_sample_backends(state: GatewayState, raw: dict[str, Any]) -> None:
    assert {b.status.value for b in state.backends} >= {"healthy", "unhealthy"}
    assert any(not b.enabled for b in state.backends)
    for backend in raw["backends"]:
        assert not {"api_key", "key", "token"} & set(backend), backend["id"]
        assert isinstance(backend["api_key_set"], bool)


def test_sample_plugins_and_no_secrets(state: GatewayState) -> None:
    args = [a for p in state.plugins for a in p.args]
    assert state.plugins and args
    secrets = [a for a in args if a.secret]
    assert secrets
    for arg in secrets:
        assert arg.value is None, f"secret {arg.yaml} carries a value"
    assert all(a.value is not None for a in args if not a.secret)
    assert {a.source for a in args} >= {"default", "yaml", "env"}


def test_sample_events(state: GatewayState) -> None:
    events = state.events
    assert len(events) >= 10
    ids = [e.id for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    stamps = [e.ts for e in events]
    assert stamps == sorted(stamps)
    kinds = {e.kind for e in events}
    assert {"connect", "disconnect", "evict", "drain", "drained", "undrain", "retry"} <= kinds
    assert "protocol_error" in kinds and "status" in kinds


# ---- worker protocol frames --------------------------------------------------------------

WORKER_FRAMES = [
    RegisterFrame(
        id="gpu-a100-01",
        name="gpu-a100-01",
        models=["llama3.1:8b-instruct-q4_K_M"],
        max_concurrency=4,
        preferred_batch_size=64,
        version="0.1.0",
        host={"hostname": "gpu-a100-01", "os": "Linux", "arch": "x86_64", "cpu_count": 64},
        labels={"zone": "eu-west-1a"},
    ),
    HeartbeatFrame(cpu_percent=37.5, mem_percent=61.0),
    StatusFrame(ready=False, reason="upstream unreachable", models=["m"], max_concurrency=2),
    AcceptedFrame(job_id="chat-1"),
    ChunkFrame(job_id="chat-1.2", data={"object": "chat.completion.chunk"}, tokens=3),
    ChunksFrame(job_id="chat-1.2", chunks=['{"object":"chat.completion.chunk"}'], tokens=1),
    ResultFrame(job_id="chat-1", data={"object": "chat.completion"}, usage={"total_tokens": 9}),
    ErrorFrame(job_id="embe-2.c3", message="out of memory", status=503, code="oom"),
    LogsFrame(
        request_id="l1",
        lines=[{"ts": 1.5, "level": "INFO", "logger": "w", "message": "hi"}],
        snapshot_done=True,
    ),
]
GATEWAY_FRAMES = [
    RegisteredFrame(
        worker_id="w1", heartbeat_interval_s=5, heartbeat_expiry_s=20, max_frame_bytes=4 << 20
    ),
    JobFrame(job_id="chat-1", kind="chat", model="m", stream=True, body={"messages": []}),
    CancelFrame(job_id="chat-1", reason="cancelled by operator"),
    DrainFrame(draining=True),
    LogsRequestFrame(request_id="l1", tail=50, follow=True),
    LogsStopFrame(request_id="l1"),
]


@pytest.mark.parametrize("frame", WORKER_FRAMES, ids=lambda f: f.type)
def test_worker_frame_round_trip(frame: Any) -> None:
    parsed = WORKER_FRAME_ADAPTER.validate_json(frame.model_dump_json())
    assert type(parsed) is type(frame)
    assert parsed == frame


@pytest.mark.parametrize("frame", GATEWAY_FRAMES, ids=lambda f: f.type)
def test_gateway_frame_round_trip(frame: Any) -> None:
    parsed = GATEWAY_FRAME_ADAPTER.validate_json(frame.model_dump_json())
    assert type(parsed) is type(frame)
    assert parsed == frame


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        "{}",
        '{"type": "heartbeat", "cpu_percent": "busy"}',
        '{"type": "chunk", "data": {}}',
        '{"type": "result"}',
        '{"type": "error", "job_id": "j", "message": "x", "status": 200}',
        '{"type": "status", "max_concurrency": -1}',
    ],
)
def test_malformed_worker_frame_rejected(text: str) -> None:
    with pytest.raises(ValidationError):
        WORKER_FRAME_ADAPTER.validate_json(text)


def test_unknown_frame_type_rejected() -> None:
    with pytest.raises(ValidationError):
        WORKER_FRAME_ADAPTER.validate_json('{"type": "hello", "id": "w1"}')
    with pytest.raises(ValidationError):
        GATEWAY_FRAME_ADAPTER.validate_json('{"type": "register", "id": "w1"}')


@pytest.mark.parametrize("worker_id", ["", "has space", "semi;colon", "ü-umlaut", "x" * 129])
def test_register_with_invalid_id_rejected(worker_id: str) -> None:
    with pytest.raises(ValidationError):
        WORKER_FRAME_ADAPTER.validate_python({"type": "register", "id": worker_id})


def test_register_defaults() -> None:
    frame = WORKER_FRAME_ADAPTER.validate_json('{"type": "register", "id": "gpu-01"}')
    assert isinstance(frame, RegisterFrame)
    assert frame.max_concurrency == 1 and frame.preferred_batch_size == 32
    assert frame.protocol == 1


# ---- examples in docs/ ------------------------------------------------------------------


def _json_blocks(path: Path | str) -> list[Any]:
    text = path.read_text(encoding="utf-8") if isinstance(path, Path) else path
    parts = text.split("```json\n")[1:]
    return [json.loads(part.split("```", 1)[0]) for part in parts]


MCP_HEADING = "\n# MCP relay protocol"


def _protocol_doc(part: str) -> str:
    """docs/protocol.md holds the worker protocol, then (after MCP_HEADING) the MCP relay's."""
    worker, found, mcp = (DOCS / "protocol.md").read_text(encoding="utf-8").partition(MCP_HEADING)
    assert found, f"docs/protocol.md has no {MCP_HEADING.strip()!r} section"
    return worker if part == "worker" else mcp


def test_protocol_doc_examples_are_valid_frames() -> None:
    """Every JSON example in docs/protocol.md is a valid frame; every frame type has one."""
    seen: set[tuple[str, str]] = set()
    for block in _json_blocks(_protocol_doc("worker")):
        try:
            frame = WORKER_FRAME_ADAPTER.validate_python(block)
            direction = "worker"
        except ValidationError:
            frame = GATEWAY_FRAME_ADAPTER.validate_python(block)
            direction = "gateway"
        assert not frame.model_extra, f"unknown fields in example {block}"
        seen.add((direction, frame.type))
    expected = {("worker", f.type) for f in WORKER_FRAMES}
    expected |= {("gateway", f.type) for f in GATEWAY_FRAMES}
    assert seen == expected


def test_mcp_protocol_doc_examples_are_valid_frames() -> None:
    """Every JSON example of the MCP relay section is a valid frame; every type has one."""
    seen: set[tuple[str, str]] = set()
    for block in _json_blocks(_protocol_doc("mcp")):
        try:
            frame = RELAY_FRAME_ADAPTER.validate_python(block)
            direction = "relay"
        except ValidationError:
            frame = GATEWAY_RELAY_FRAME_ADAPTER.validate_python(block)
            direction = "gateway"
        assert not frame.model_extra, f"unknown fields in example {block}"
        seen.add((direction, frame.type))
    relay_types = RELAY_FRAME_ADAPTER.json_schema()["discriminator"]["mapping"]
    gateway_types = GATEWAY_RELAY_FRAME_ADAPTER.json_schema()["discriminator"]["mapping"]
    expected = {("relay", t) for t in relay_types} | {("gateway", t) for t in gateway_types}
    assert seen == expected


def test_mcp_protocol_schema_file_is_current() -> None:
    path = DOCS / "mcp_protocol.schema.json"
    assert path.exists(), f"{path} is missing; {REGENERATE}"
    assert path.read_text(encoding="utf-8") == _dump(mcp_protocol_json_schema()), (
        f"{path} is out of date with gatewaytui.schema.mcp_protocol; {REGENERATE}"
    )


def test_state_doc_examples_are_valid_messages() -> None:
    blocks = _json_blocks(DOCS / "state.md")
    types = {STREAM_MESSAGE_ADAPTER.validate_python(b).type for b in blocks}
    assert types == {"snapshot", "delta", "keepalive"}


def test_sample_state_is_what_the_builder_makes(tmp_path: Path) -> None:
    """The sample is built from the gateway's own objects; a shape change must rebuild it."""
    out = tmp_path / "sample.json"
    builder = REPO / "tests" / "support" / "sample_state_builder.py"
    subprocess.run([sys.executable, str(builder), str(out)], check=True, capture_output=True)
    assert out.read_text(encoding="utf-8") == SAMPLE.read_text(encoding="utf-8"), (
        "sample_state.json is stale: run `python tests/support/sample_state_builder.py`"
    )
