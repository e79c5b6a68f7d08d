"""The worker protocol end to end: registration, refusals, bad frames, trustworthy status."""

from __future__ import annotations

import json
import threading

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from gatewaytui.schema import GatewayState
from support.raw_worker import RawWorker


def worker_status(gw, worker_id: str) -> str | None:
    record = gw.sync(lambda: gw.gateway.registry.get(worker_id))
    return None if record is None else gw.sync(lambda: record.status.value)


def state(gw) -> GatewayState:
    return GatewayState.model_validate(httpx.get(gw.url + "/api/state").json())


def test_register_reply_and_state(gateway):
    worker = RawWorker(
        gateway.ws_url,
        "gpu-1",
        ["llama3:8b"],
        max_concurrency=3,
        batch_size=16,
        host={"hostname": "box", "os": "linux", "gpu": "A100"},
        labels={"zone": "a"},
    )
    assert worker.registered is not None
    assert worker.registered["worker_id"] == "gpu-1"
    assert worker.registered["heartbeat_interval_s"] == 5.0
    snap = state(gateway)
    (w,) = snap.workers
    assert (w.id, w.status, w.max_concurrency, w.preferred_batch_size) == (
        "gpu-1",
        "connected",
        3,
        16,
    )
    assert w.host.gpu == "A100" and w.labels == {"zone": "a"}
    assert snap.server.status == "ready"
    assert [e.kind for e in snap.events][-1] == "connect"


def test_second_connection_with_live_id_is_refused_and_first_survives(gateway):
    first = RawWorker(gateway.ws_url, "dup", ["m"])
    second = RawWorker(gateway.ws_url, "dup", ["m"], register=False)
    second.send({"type": "register", "id": "dup", "models": ["m"]})
    assert second.closed.wait(5)
    assert second.close_code == 4009
    assert "already connected" in second.close_reason
    # The first connection is untouched and still gets work.
    result: dict = {}
    t = threading.Thread(
        target=lambda: result.update(
            httpx.post(
                gateway.url + "/v1/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
                timeout=10,
            ).json()
        )
    )
    t.start()
    job = first.next_job()
    first.reply_chat(job, "still here")
    t.join(10)
    assert result["choices"][0]["message"]["content"] == "still here"
    assert any(e.kind == "refuse" for e in state(gateway).events)


def test_wrong_worker_key_gets_401_before_upgrade(make_gateway):
    gw = make_gateway(server__worker_key="s3cret")
    with pytest.raises(InvalidStatus) as info:
        connect(
            gw.ws_url + "/api/workers/connect", additional_headers={"Authorization": "Bearer no"}
        )
    assert info.value.response.status_code == 401
    assert b"s3cret" not in info.value.response.body
    ok = RawWorker(gw.ws_url, "w", ["m"], key="s3cret")
    assert ok.registered is not None


@pytest.mark.parametrize(
    ("payload", "reason_part"),
    [
        ("{not json", "malformed frame"),
        (json.dumps({"type": "heartbeat", "cpu_percent": "lots"}), "malformed frame"),
        (json.dumps({"type": "teleport"}), "malformed frame"),
        (b"\x00\x01", "binary frames"),
    ],
)
def test_malformed_frame_closes_only_that_connection(gateway, payload, reason_part):
    healthy = RawWorker(gateway.ws_url, "healthy", ["m"])
    bad = RawWorker(gateway.ws_url, "bad", ["m"])
    bad.send_raw(payload)
    assert bad.closed.wait(5)
    assert bad.close_code == 1008
    assert reason_part in bad.close_reason
    gateway.wait_for(lambda g: g.registry.get("bad").status.value == "gone")
    assert worker_status(gateway, "healthy") == "connected"
    healthy.heartbeat()
    gateway.wait_for(lambda g: g.registry.get("healthy").status.value == "idle")
    events = state(gateway).events
    assert any(e.kind == "protocol_error" and e.worker_id == "bad" for e in events)


def test_oversized_frame_is_a_policy_violation(make_gateway):
    gw = make_gateway(workers__max_frame_bytes=1024)
    worker = RawWorker(gw.ws_url, "big", ["m"])
    worker.send({"type": "status", "ready": False, "reason": "x" * 900, "models": ["y" * 500]})
    assert worker.closed.wait(5)
    assert worker.close_code == 1008
    assert "exceeds max_frame_bytes=1024" in worker.close_reason


def test_frame_over_the_websocket_limit_is_a_protocol_error_not_a_worker_disconnect(gateway):
    limit = 16 * 1024 * 1024  # max(16 MiB, 2 x max_frame_bytes (4 MiB), 2 x MCP limit)
    worker = RawWorker(gateway.ws_url, "huge", ["m"])
    worker.send({"type": "status", "ready": False, "reason": "x" * (limit + 1)})
    assert worker.closed.wait(10)
    assert worker.close_code == 1009  # the transport refuses it before the gateway reads it
    gateway.wait_for(lambda g: g.registry.get("huge").status.value == "gone")
    events = [e for e in state(gateway).events if e.worker_id == "huge"]
    (error,) = [e for e in events if e.kind == "protocol_error"]
    assert error.level == "error"
    assert error.message == f"worker huge closed: frame larger than {limit} bytes"
    (gone,) = [e for e in events if e.kind == "disconnect"]
    assert gone.message == f"worker huge disconnected: frame larger than {limit} bytes"
    assert "closed by worker" not in gone.message


def test_first_frame_must_be_register(gateway):
    worker = RawWorker(gateway.ws_url, "x", ["m"], register=False)
    worker.heartbeat()
    assert worker.closed.wait(5)
    assert worker.close_code == 1008
    assert "first frame must be 'register'" in worker.close_reason


def test_status_follows_inflight_and_reports(gateway):
    worker = RawWorker(gateway.ws_url, "w", ["m"], max_concurrency=2)
    worker.heartbeat()
    gateway.wait_for(lambda g: g.registry.get("w").status.value == "idle")
    done = threading.Event()

    def call() -> None:
        httpx.post(
            gateway.url + "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
            timeout=10,
        )
        done.set()

    threading.Thread(target=call).start()
    job = worker.next_job()
    assert worker_status(gateway, "w") == "working"
    worker.reply_chat(job)
    assert done.wait(10)
    gateway.wait_for(lambda g: g.registry.get("w").status.value == "idle")
    worker.status(ready=False, reason="upstream down")
    gateway.wait_for(lambda g: g.registry.get("w").status.value == "not_ready")
    snap = state(gateway)
    assert snap.workers[0].status_reason == "upstream down"
    assert snap.server.status == "not_ready"
    worker.status(ready=True)
    gateway.wait_for(lambda g: g.registry.get("w").status.value == "idle")
    worker.status(ready=True, max_concurrency=0)
    gateway.wait_for(lambda g: g.registry.get("w").status.value == "not_ready")


def test_heartbeat_expiry_marks_gone_then_removes(make_gateway):
    gw = make_gateway(
        workers__heartbeat_interval="100ms",
        workers__heartbeat_expiry="300ms",
        workers__gone_retention="500ms",
    )
    worker = RawWorker(gw.ws_url, "quiet", ["m"])
    gw.wait_for(lambda g: g.registry.get("quiet").status.value == "gone", timeout=5)
    assert worker.closed.wait(5)
    assert worker.close_code == 4008
    snap = state(gw)
    assert snap.workers[0].gone_at is not None
    assert any(e.kind == "evict" for e in snap.events)
    gw.wait_for(lambda g: g.registry.get("quiet") is None, timeout=5)


def test_counters_survive_reconnect_of_same_id(gateway):
    worker = RawWorker(gateway.ws_url, "sticky", ["m"])
    result = {}
    t = threading.Thread(
        target=lambda: result.update(
            r=httpx.post(
                gateway.url + "/v1/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
                timeout=10,
            )
        )
    )
    t.start()
    worker.reply_chat(worker.next_job(), tokens=7)
    t.join(10)
    assert result["r"].status_code == 200
    httpx.post(gateway.url + "/api/workers/sticky/drain").raise_for_status()
    worker.close()
    gateway.wait_for(lambda g: g.registry.get("sticky").status.value == "gone")
    RawWorker(gateway.ws_url, "sticky", ["m"])
    snap = state(gateway)
    (w,) = snap.workers
    assert (w.processed, w.tokens_out, w.reconnects) == (1, 7, 1)
    assert w.per_model["m"].requests == 1
    # The operator's drain also survives the reconnect: it must be undrained explicitly.
    assert w.status == "draining" and w.drain_started_at is not None


def test_disconnect_is_gone_and_evented(gateway):
    worker = RawWorker(gateway.ws_url, "bye", ["m"])
    worker.close()
    gateway.wait_for(lambda g: g.registry.get("bye").status.value == "gone")
    snap = state(gateway)
    assert snap.workers[0].status == "gone"
    assert any(e.kind == "disconnect" and e.worker_id == "bye" for e in snap.events)
    assert httpx.get(gateway.url + "/readyz").status_code == 503


def test_removed_worker_leaves_metrics(make_gateway):
    gw = make_gateway(workers__gone_retention="300ms")
    leaving = RawWorker(gw.ws_url, "leaving", ["m"], max_concurrency=1)
    staying = RawWorker(gw.ws_url, "staying", ["m"], max_concurrency=1)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    calls = [
        threading.Thread(
            target=httpx.post,
            args=(gw.url + "/v1/chat/completions",),
            kwargs={"json": body, "timeout": 10},
        )
        for _ in range(2)
    ]
    for call in calls:
        call.start()
    for worker in (leaving, staying):  # one slot each: one request each
        worker.reply_chat(worker.next_job())
    for call in calls:
        call.join(10)
    before = httpx.get(gw.url + "/metrics").text
    for who in ("leaving", "staying"):
        assert f'gatewaytui_worker_jobs_total{{outcome="success",worker="{who}"}} 1.0' in before
        assert f'gatewaytui_worker_tokens_total{{kind="out",worker="{who}"}} 2.0' in before
        assert f'gatewaytui_worker_processing_seconds_count{{kind="chat",worker="{who}"}}' in before
    leaving.close()
    gw.wait_for(lambda g: g.registry.get("leaving") is None)  # gone, then past retention
    after = httpx.get(gw.url + "/metrics").text
    assert 'worker="leaving"' not in after
    assert 'gatewaytui_worker_jobs_total{outcome="success",worker="staying"} 1.0' in after
    assert 'gatewaytui_model_requests_total{model="m",outcome="success"} 2.0' in after
