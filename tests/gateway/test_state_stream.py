"""`WS /api/state/stream`: snapshot, field-level deltas, coalescing, keep-alive, resync."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from gatewaytui.gateway.hub import Collection, StateHub
from gatewaytui.schema.stream import STREAM_MESSAGE_ADAPTER, DeltaMessage, SnapshotMessage
from support.raw_worker import RawWorker
from support.waiting import poll_until


def open_stream(gw, token: str | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return connect(gw.ws_url + "/api/state/stream", additional_headers=headers, legacy=True)


def next_of(ws, kind: str, timeout: float = 5) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(ws.recv(timeout=max(deadline - time.monotonic(), 0.01)))
        STREAM_MESSAGE_ADAPTER.validate_python(message)
        if message["type"] == kind:
            return message


def test_snapshot_then_field_level_deltas(gateway):
    with open_stream(gateway) as ws:
        snapshot = SnapshotMessage.model_validate(next_of(ws, "snapshot"))
        assert snapshot.state.schema_version == 1
        assert {p.id for p in snapshot.state.plugins} >= {"llm", "workers", "server"}
        seq = snapshot.seq
        worker = RawWorker(gateway.ws_url, "w1", ["m"], max_concurrency=2)
        delta = DeltaMessage.model_validate(next_of(ws, "delta"))
        assert delta.seq == seq + 1
        added = delta.upsert["workers"][0]
        assert added["id"] == "w1" and added["status"] == "connected" and "models" in added
        assert any(m["id"] == "m" for m in delta.upsert["models"])
        worker.heartbeat()
        while True:
            patch_delta = next_of(ws, "delta")
            patches = patch_delta.get("upsert", {}).get("workers", [])
            if patches:
                break
        patch = patches[0]
        assert patch["id"] == "w1" and patch["status"] == "idle"
        assert "models" not in patch and "max_concurrency" not in patch
        assert patch_delta["seq"] > delta.seq
        worker.close()
        while True:
            message = next_of(ws, "delta")
            gone = [p for p in message.get("upsert", {}).get("workers", []) if p.get("status")]
            if gone and gone[0]["status"] == "gone":
                break


def test_deltas_are_coalesced_to_at_most_four_per_second(gateway):
    """Eight deltas under a flood of changes take the gateway at least seven ticks of 0.25 s
    to send. Timed from before the stream opened (the gateway cannot send them earlier than
    that, however late this thread reads them), not from receive-time gaps, which a busy
    machine squeezes when the reader falls behind."""
    worker = RawWorker(gateway.ws_url, "busy", ["m"])
    begin = time.monotonic()
    with open_stream(gateway) as ws:
        next_of(ws, "snapshot")
        deltas = 0
        deadline = begin + 30
        while deltas < 8:
            assert time.monotonic() < deadline, f"only {deltas} deltas in 30 s"
            for _ in range(20):
                worker.heartbeat()
            try:
                message = json.loads(ws.recv(timeout=0.05))
            except TimeoutError:
                continue
            if message["type"] == "delta":
                deltas += 1
        elapsed = time.monotonic() - begin
        assert elapsed > 7 * 0.25 * 0.8, f"8 deltas in {elapsed:.2f} s: not coalesced"


def test_keepalive_on_an_idle_stream(make_gateway):
    gw = make_gateway(server__state_keepalive="200ms")
    with open_stream(gw) as ws:
        snapshot = next_of(ws, "snapshot")
        keepalive = next_of(ws, "keepalive", timeout=3)
        assert keepalive["seq"] >= snapshot["seq"]


def test_stream_requires_a_viewer_or_operator_token(make_gateway):
    gw = make_gateway(server__viewer_tokens="look", server__operator_tokens="act")
    with pytest.raises(InvalidStatus) as info:
        open_stream(gw, "wrong")
    assert info.value.response.status_code == 401
    with open_stream(gw, "look") as ws:
        assert next_of(ws, "snapshot")["state"]["server"]["status"] == "not_ready"


async def test_slow_subscriber_is_resynced_without_slowing_the_hub():
    items: dict[str, dict] = {}
    hub = StateHub(
        {"workers": Collection(items.get, lambda: list(items.values()))},
        lambda: {"version": "t", "status": "ready"},
        rate=4,
        keepalive=60,
    )
    release = asyncio.Event()
    received: list[dict] = []

    async def slow_send(text: str) -> None:
        received.append(json.loads(text))
        if len(received) == 2:  # stall on the first delta, like a client over a bad link
            await release.wait()

    task = asyncio.create_task(hub.serve(slow_send))
    await asyncio.sleep(0)
    items["w"] = {"id": "w", "n": 0}
    hub.touch("workers", "w")
    hub.tick()  # delta 1 -> being sent, stalls
    await asyncio.sleep(0)
    for n in range(1, 200):  # ticks are plain calls: nothing here can wait on the client
        items["w"] = {"id": "w", "n": n}
        hub.touch("workers", "w")
        hub.tick()
    assert hub.resyncs == 1  # its queue overflowed once; then it was skipped
    assert len(received) == 2  # nothing reached the stalled client meanwhile
    release.set()
    await poll_until(lambda: len(received) >= 3, what="the resync snapshot")
    task.cancel()
    first, stalled, resync = received[:3]
    assert first["type"] == "snapshot" and stalled["type"] == "delta"
    assert resync["type"] == "snapshot" and resync["seq"] == hub.seq
    assert resync["state"]["workers"] == [{"id": "w", "n": 199}]


def test_full_state_endpoint_validates(gateway):
    import httpx

    from gatewaytui.schema import GatewayState

    RawWorker(gateway.ws_url, "w1", ["m"])
    body = httpx.get(gateway.url + "/api/state").json()
    state = GatewayState.model_validate(body)
    assert [w.id for w in state.workers] == ["w1"]
    assert state.models[0].capacity == 1
