"""GatewayClient and Session actions against a real gateway: results, refusals, reachability."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import pytest
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.frames import Close
from websockets.http11 import Response

from gatewaytui.client import (
    ActionError,
    ConnectionStatus,
    GatewayClient,
    GatewayUnreachable,
    OfflineError,
    Session,
    normalise_url,
)
from gatewaytui.client.errors import describe_exception
from support.paths import SAMPLE
from support.raw_worker import RawWorker

TOKENS = {"server__operator_tokens": "act", "server__viewer_tokens": "look"}


async def test_worker_and_server_actions(make_gateway):
    gw = make_gateway(**TOKENS)
    worker = RawWorker(gw.ws_url, "w1", ["m"], max_concurrency=2)
    async with GatewayClient(gw.url, "act") as client:
        assert await client.whoami() == "operator"
        result = await client.drain_worker("w1")
        assert result.ok and result.target == "w1" and result.message == "worker w1 is draining"
        assert result.details == {"inflight": 0}
        assert (await client.state()).workers[0].draining is True
        result = await client.undrain_worker("w1")
        assert result.message == "worker w1 is back in rotation"

        result = await client.drain_server(timeout_s=30)
        assert result.target == "server" and result.message == "server is draining"
        health = await client.health()
        assert health.alive and not health.ready and health.status == "draining"
        assert health.reason == "server is draining"
        assert (await client.undrain_server()).message == "server is accepting requests again"
        assert (await client.health()).ready

        plugins = {p.id: p for p in await client.plugins()}
        tokens = next(a for a in plugins["server"].args if a.id == "operator_tokens")
        assert tokens.secret and tokens.is_set and tokens.value is None
    worker.close()


async def test_cancel_a_job_in_flight(gateway):
    worker = RawWorker(gateway.ws_url, "w1", ["m"])
    async with (
        GatewayClient(gateway.url) as client,
        httpx.AsyncClient(base_url=gateway.url, timeout=10) as http,
    ):
        request = asyncio.create_task(
            http.post(
                "/v1/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            )
        )
        await asyncio.to_thread(worker.next_job)
        (job,) = (await client.state_json())["jobs"]
        result = await client.cancel_job(job["id"])
        assert result.ok and result.target == job["id"]
        assert result.message == f"job {job['id']} cancelled"
        response = await request
        assert response.status_code >= 400
        cancel = await asyncio.to_thread(worker.cancels.get, True, 5)
        assert cancel["type"] == "cancel"
        with pytest.raises(ActionError) as info:
            await client.cancel_job(job["id"])  # finished: nothing left to cancel
        assert info.value.status == 404
    worker.close()


async def test_refusals_carry_the_status_and_the_gateways_message(make_gateway):
    gw = make_gateway(**TOKENS)
    async with GatewayClient(gw.url, "act") as client:
        with pytest.raises(ActionError) as info:
            await client.drain_worker("ghost")
        assert info.value.status == 404 and info.value.message == "no worker with id 'ghost'"
        assert info.value.code == "not_found" and not info.value.unauthorized
        assert str(info.value) == "HTTP 404: no worker with id 'ghost'"

    worker = RawWorker(gw.ws_url, "w1", ["m"])
    async with GatewayClient(gw.url, "look") as viewer:
        assert await viewer.whoami() == "viewer"
        assert (await viewer.state()).workers[0].id == "w1"  # viewers read...
        with pytest.raises(ActionError) as info:
            await viewer.drain_worker("w1")  # ...but do not act
        assert info.value.status == 403 and info.value.unauthorized
        assert "viewer role" in info.value.message
    async with GatewayClient(gw.url, "wrong") as stranger:
        with pytest.raises(ActionError) as info:
            await stranger.state()
        assert info.value.status == 401
        assert info.value.message == "invalid or missing operator token"
        assert "wrong" not in repr(stranger) and "wrong" not in str(info.value)
    worker.close()
    worker.closed.wait(5)
    async with GatewayClient(gw.url, "act") as client:
        await asyncio.to_thread(gw.wait_for, lambda g: g.registry.get("w1").gone_at is not None)
        with pytest.raises(ActionError) as info:
            await client.drain_worker("w1")
        assert info.value.status == 409 and "is gone" in info.value.message


async def test_an_unreachable_gateway_raises_a_short_reason():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    async with GatewayClient(url) as client:
        with pytest.raises(GatewayUnreachable) as info:
            await client.health()
        assert info.value.message == "connection refused"


def test_urls_are_normalised():
    assert normalise_url("127.0.0.1:8080") == "http://127.0.0.1:8080"
    assert normalise_url("https://gw.example/ops/") == "https://gw.example/ops"
    assert normalise_url("ws://h:1") == "http://h:1"
    with pytest.raises(ValueError, match="not a gateway URL"):
        normalise_url("ftp://h")


async def test_a_live_session_acts_and_reports(make_gateway):
    gw = make_gateway(**TOKENS)
    worker = RawWorker(gw.ws_url, "w1", ["m"])
    session = Session.live("lab", gw.url, "act")
    session.start()
    try:
        await session.connection.wait_status(ConnectionStatus.LIVE, timeout=5)
        assert session.can_act and session.status_line() == f"lab: live ({gw.url})"
        assert (await session.drain_worker("w1")).ok
        async for update in session.updates():
            if session.store.workers.get("w1", {}).get("draining"):
                assert update.change is not None
                break
    finally:
        await session.stop()
    worker.close()


async def test_an_offline_session_shows_a_snapshot_and_refuses_actions(tmp_path: Path):
    session = Session.offline(SAMPLE, name="saved")
    assert session.is_offline and session.state.status is ConnectionStatus.OFFLINE
    assert not session.can_act and len(session.store.workers) == 13
    assert session.status_line() == (
        f"saved: offline snapshot {SAMPLE} as of 2026-11-21T09:30:00.000Z"
    )
    session.start()
    updates = session.updates()
    first = await anext(updates)
    assert first.state.status is ConnectionStatus.OFFLINE and first.state_changed
    assert first.change.snapshot and len(first.change.added["workers"]) == 13
    assert first.change.server and first.change.events_reset
    with pytest.raises(OfflineError, match="saved is an offline snapshot"):
        await session.drain_worker("gpu-a100-01")
    copy = session.save_snapshot(tmp_path / "copy.json")
    assert Session.offline(copy).store.to_state_dict() == session.store.to_state_dict()
    await session.stop()
    with pytest.raises(StopAsyncIteration):
        await anext(updates)


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (ConnectionRefusedError(111, "Connect call failed"), "connection refused"),
        (TimeoutError(), "timed out"),
        (httpx.ReadTimeout("read"), "timed out"),
        (ConnectionClosedError(Close(1012, ""), None), "gateway restarting (1012)"),
        (ConnectionClosedError(Close(1011, "bug"), None), "connection closed by gateway (1011"),
        (ConnectionClosedError(None, None), "connection lost"),
        (
            InvalidStatus(
                Response(401, "Unauthorized", Headers(), b'{"error": {"message": "bad token"}}')
            ),
            "HTTP 401: bad token",
        ),
        (InvalidStatus(Response(502, "Bad Gateway", Headers(), b"<html>oops</html>")), "HTTP 502"),
    ],
)
def test_failures_read_as_a_few_words(exc: BaseException, text: str):
    assert describe_exception(exc).startswith(text)
