"""Worker logs: the ring buffer, the logs frames over the worker's own connection, and
`GET /api/workers/{id}/logs` (snapshot and follow) against a real gateway and real workers."""

from __future__ import annotations

import asyncio
import logging
import queue

import httpx
import pytest

from gatewaytui.client.errors import ActionError
from gatewaytui.client.http import GatewayClient
from gatewaytui.schema.api import WorkerLogs
from gatewaytui.workers.logbuffer import LogRing, redact
from support.gateway_harness import RunningGateway
from support.raw_worker import RawWorker

KEY = "wk-very-secret-key"
OPS = "op-token"
VIEW = "view-token"


def _record(
    msg: str, *args: object, name: str = "gatewaytui.workers.gateway_link"
) -> logging.LogRecord:
    return logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)


def test_ring_is_bounded_and_masks_secrets() -> None:
    ring = LogRing(capacity=3)
    ring.add_secret(KEY)
    for i in range(5):
        ring.emit(_record("line %d", i))
    assert [line.message for line in ring.tail(10)] == ["line 2", "line 3", "line 4"]
    ring.emit(_record("dialled with key %s", KEY))
    ring.emit(_record("upstream said: Authorization: Bearer abcdef123456 api_key=sk-12345678xyz"))
    ring.emit(_record("url https://bob:hunter2pass@example.com/v1"))
    text = "\n".join(line.message for line in ring.tail(10))
    assert KEY not in text and "abcdef123456" not in text and "sk-12345678xyz" not in text
    assert "hunter2pass" not in text and "***@example.com" in text
    assert redact("plain words, api stays") == "plain words, api stays"


def test_ring_keeps_each_workers_lines_apart() -> None:
    ring = LogRing()
    ring.emit(_record("worker %s: job %s failed", "w1", "j1"))
    ring.emit(_record("%s: stopped", "worker w2"))
    ring.emit(_record("backend reloaded", name="gatewaytui.workers.openai_relay"))
    assert [x.message for x in ring.tail(10, "w1")] == [
        "worker w1: job j1 failed",
        "backend reloaded",
    ]
    assert [x.message for x in ring.tail(10, "w2")] == ["worker w2: stopped", "backend reloaded"]


@pytest.fixture
def secured(make_gateway) -> RunningGateway:
    return make_gateway(
        server__worker_key=KEY, server__operator_tokens=OPS, server__viewer_tokens=VIEW
    )


def _get(gw: RunningGateway, path: str, token: str | None = VIEW) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(gw.url + path, headers=headers, timeout=10)


def test_snapshot_over_the_workers_own_connection(secured, sim_workers, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gatewaytui.workers")
    sim_workers(secured, id="logw", key=KEY)
    secured.wait_for(lambda g: (w := g.registry.get("logw")) is not None and w.heard_from)
    assert _get(secured, "/api/workers/logw/logs", token=None).status_code == 401
    response = _get(secured, "/api/workers/logw/logs?tail=50")
    assert response.status_code == 200, response.text
    logs = WorkerLogs.model_validate(response.json())
    messages = [line.message for line in logs.lines]
    assert any("worker logw: registered with" in m for m in messages), messages
    assert KEY not in response.text
    assert all(line.level and line.ts > 0 for line in logs.lines)
    assert _get(secured, "/api/workers/logw/logs?tail=-1").status_code == 422
    assert _get(secured, "/api/workers/nope/logs").status_code == 404


def test_follow_streams_new_lines_and_stops_on_the_worker(secured, sim_workers, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gatewaytui.workers")
    fleet = sim_workers(secured, id="follow-w", key=KEY)
    del fleet

    async def scenario() -> list[str]:
        seen: list[str] = []
        async with GatewayClient(secured.url, VIEW) as client:
            stream = client.follow_worker_logs("follow-w", tail=5)
            first = await anext(stream)
            assert isinstance(first, WorkerLogs)
            seen.extend(line.message for line in first.lines)
            async with GatewayClient(secured.url, OPS) as ops:
                await ops.drain_worker("follow-w")  # the worker logs that the gateway drained it
            async with asyncio.timeout(10):
                async for batch in stream:
                    assert isinstance(batch, WorkerLogs)
                    seen.extend(line.message for line in batch.lines)
                    if any("drained this worker" in m for m in seen):
                        break
            await stream.aclose()
        return seen

    seen = asyncio.run(scenario())
    assert any("the gateway drained this worker" in m for m in seen)
    # Closing the stream told the worker to stop following (nothing is sent unless asked).
    secured.wait_for(lambda g: g.worker_logs.open_requests == 0)


def test_followers_see_the_end_when_the_worker_leaves(secured, sim_workers, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gatewaytui.workers")
    fleet = sim_workers(secured, id="leaving", key=KEY)

    async def scenario() -> str:
        async with GatewayClient(secured.url, VIEW) as client:
            stream = client.follow_worker_logs("leaving", tail=0)
            await anext(stream)
            await asyncio.get_running_loop().run_in_executor(None, fleet.stop)
            async with asyncio.timeout(10):
                async for item in stream:
                    if isinstance(item, str):
                        return item
        raise AssertionError("no end")

    assert "leaving disconnected" in asyncio.run(scenario())


def test_an_older_worker_is_reported_as_not_supporting_logs(secured) -> None:
    old = RawWorker(secured.ws_url, "old-1", ["m"], key=KEY)
    try:
        secured.wait_for(lambda g: g.registry.get("old-1") is not None)
        response = _get(secured, "/api/workers/old-1/logs")
        assert response.status_code == 501
        assert "worker old-1 does not support logs" in response.json()["error"]["message"]
        with pytest.raises(queue.Empty):  # it was never sent a frame it cannot parse
            old.others.get(timeout=0.2)

        async def via_client() -> ActionError:
            async with GatewayClient(secured.url, VIEW) as client:
                with pytest.raises(ActionError) as caught:
                    await client.worker_logs("old-1")
                return caught.value

        error = asyncio.run(via_client())
        assert error.status == 501 and error.code == "logs_unsupported"
    finally:
        old.close()


def test_a_silent_worker_is_reported_in_time(secured) -> None:
    mute = RawWorker(secured.ws_url, "mute-1", ["m"], key=KEY, features=["logs"])
    secured.gateway.worker_logs.answer_timeout_s = 0.3
    try:
        secured.wait_for(lambda g: g.registry.get("mute-1") is not None)
        response = _get(secured, "/api/workers/mute-1/logs?follow=true")
        assert response.status_code == 504
        assert "did not answer" in response.json()["error"]["message"]
        asked = mute.others.get(timeout=5)
        assert asked["type"] == "logs_request" and asked["follow"] is True
        assert mute.others.get(timeout=5)["type"] == "logs_stop"
        secured.wait_for(lambda g: g.worker_logs.open_requests == 0)
    finally:
        mute.close()
