"""The MCP relay end to end: a real gateway on a loopback port, the shipped relay, a server
built with the official `mcp` SDK behind it, and the SDK's Streamable HTTP client in front."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time

import httpx
import pytest
import websockets
from mcp.shared.exceptions import MCPError
from websockets.exceptions import ConnectionClosed

from gatewaytui.schema import GatewayState
from gatewaytui.schema.mcp_protocol import (
    GATEWAY_RELAY_FRAME_ADAPTER,
    RELAY_FRAME_ADAPTER,
    RelayRegisteredFrame,
    RelayRegisterFrame,
    server_info_from_initialize,
)
from support.mcp_peers import (
    STDIO_COMMAND,
    CliRelay,
    HttpMcpServer,
    InProcessRelay,
    mcp_client,
    relay_settings,
)

API = {"Authorization": "Bearer sk-mcp"}
PING = {"jsonrpc": "2.0", "id": 7, "method": "ping"}


def post(gw, client_id: str, body, headers=None, **kw) -> httpx.Response:
    content = body if isinstance(body, bytes | str) else json.dumps(body)
    return httpx.post(
        f"{gw.url}/mcp/{client_id}",
        content=content,
        headers={"content-type": "application/json", **(API if headers is None else headers)},
        timeout=10,
        **kw,
    )


def calls_in_flight(gateway, method: str | None = None, relay_id: str = "demo") -> int:
    """Calls (of `method`) in flight on a relay; read on the gateway's own loop."""
    relay = gateway.mcp.relays.get(relay_id)
    if relay is None:
        return -1
    return sum(1 for c in relay.calls.values() if method is None or c.method == method)


@pytest.fixture
def keyed(make_gateway):
    return make_gateway(server__api_keys="sk-mcp", server__worker_key="wk-mcp")


# ---- the SDK client through the relay ----------------------------------------------------


async def test_sdk_client_initializes_lists_and_calls_tools_through_a_stdio_relay(keyed):
    gw = keyed
    relay = InProcessRelay(gw, relay_settings(gw, key="wk-mcp", name="Demo tools"))
    try:
        async with mcp_client(gw, headers=API) as session:
            init = await session.initialize()
            assert (init.server_info.name, init.server_info.version) == ("demo-tools", "1.2.3")
            tools = await session.list_tools()
            assert {"add", "hold", "count"} <= {t.name for t in tools.tools}
            result = await session.call_tool("add", {"a": 2, "b": 40})
            assert result.structured_content == {"result": 42}
            progress: list[float] = []

            async def on_progress(value: float, total: float | None, message: str | None):
                progress.append(value)

            counted = await session.call_tool("count", {"n": 3}, progress_callback=on_progress)
            assert counted.content[0].text == "counted to 3"
            assert progress == [1.0, 2.0, 3.0]  # streamed back as SSE events
            hello = await session.read_resource("demo://hello")
            assert hello.contents[0].text == "hello from demo-tools"

        state = GatewayState.model_validate(httpx.get(f"{gw.url}/api/state").json())
        (client,) = state.mcp.clients
        assert (client.id, client.name, client.status) == ("demo", "Demo tools", "idle")
        assert (client.server_name, client.server_title) == ("demo-tools", "Demo Tools")
        assert client.server_version == "1.2.3" and client.transport == "stdio"
        assert client.capabilities == ["prompts", "resources", "tools"]
        assert client.functions["tools/call"] == 2 and client.functions["initialize"] == 1
        assert client.functions["tools/list"] == 1 and client.functions["resources/read"] == 1
        assert client.calls == sum(client.functions.values()) and client.errors == 0
        assert client.inflight == 0 and state.mcp.sessions == []
        metrics = httpx.get(f"{gw.url}/metrics").text
        assert (
            'gatewaytui_mcp_calls_total{client="demo",method="tools/call",outcome="success"} 2.0'
            in metrics
        )
        assert 'gatewaytui_mcp_clients{status="idle"} 1.0' in metrics
    finally:
        assert relay.stop() == 0


async def test_sdk_client_through_a_streamable_http_relay_keeps_the_servers_session(gateway):
    gw = gateway
    server = HttpMcpServer(gw)
    relay = InProcessRelay(gw, relay_settings(gw, "remote", url=server.url))
    try:
        async with mcp_client(gw, "remote") as session:
            init = await session.initialize()
            assert init.server_info.title == "Demo Tools"
            assert (await session.call_tool("echo", {"text": "héllo"})).content[0].text == "héllo"
            progress: list[float] = []

            async def on_progress(value: float, total: float | None, message: str | None):
                progress.append(value)

            await session.call_tool("count", {"n": 2}, progress_callback=on_progress)
            assert progress == [1.0, 2.0]
        sessions = {s for _, s in server.requests if s}
        assert len(sessions) == 2  # the relay's own probe, then the client's session
        client_session = next(s for m, s in server.requests if m == "POST" and s)
        assert ("DELETE", client_session) in server.requests  # the client's session end
        client = gw.sync(lambda: gw.gateway.mcp.relays["remote"].to_dict(16))
        assert client["transport"] == "http" and client["server_name"] == "demo-tools"
        assert "(terminate)" not in client["functions"]
    finally:
        relay.stop()
        server.stop()


# ---- limits --------------------------------------------------------------------------------


async def test_concurrency_limit_answers_429_and_a_client_leaving_cancels_its_call(
    make_gateway,
):
    gw = make_gateway(mcp__client_concurrency=2)
    relay = InProcessRelay(gw, relay_settings(gw))
    held: list[asyncio.Task] = []
    try:

        async def hold() -> None:
            async with mcp_client(gw) as session:
                await session.initialize()
                await session.call_tool("hold", {"seconds": 60})

        held = [asyncio.create_task(hold()) for _ in range(2)]
        await asyncio.to_thread(gw.wait_for, lambda g: calls_in_flight(g, "tools/call") == 2)

        async with mcp_client(gw) as session:
            with pytest.raises(MCPError) as refused:
                await session.initialize()
        assert refused.value.code == -32029
        assert refused.value.data == {"code": "too_many_calls"}
        raw = await asyncio.to_thread(post, gw, "demo", PING, {})
        assert raw.status_code == 429
        assert raw.json()["id"] == 7 and raw.json()["error"]["code"] == -32029

        for task in held:  # the MCP clients go away mid-call
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)
        await asyncio.to_thread(gw.wait_for, lambda g: calls_in_flight(g) == 0)
        client = gw.sync(lambda: gw.gateway.mcp.relays["demo"].to_dict(2))
        assert client["rejected"] == 2 and client["max_concurrency"] == 2
        assert client["errors_by_method"] == {"initialize": 1, "ping": 1}
        assert "2 calls in flight (mcp.client_concurrency)" in client["last_error"]
        assert (await asyncio.to_thread(post, gw, "demo", PING, {})).json()["result"] == {}
    finally:
        for task in held:
            task.cancel()
        relay.stop()


def test_oversized_request_is_413_and_oversized_answer_is_an_error(make_gateway):
    gw = make_gateway(mcp__max_request_bytes=2048, mcp__max_response_bytes=4096)
    relay = InProcessRelay(gw, relay_settings(gw))
    try:
        big = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
               "params": {"name": "echo", "arguments": {"text": "x" * 4000}}}  # fmt: skip
        response = post(gw, "demo", big, {})
        assert response.status_code == 413
        assert response.json()["error"]["data"]["code"] == "request_too_large"
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "big", "arguments": {"size": 20000}}}  # fmt: skip
        response = post(gw, "demo", call, {})
        assert response.status_code == 502
        body = response.json()
        assert body["id"] == 2 and body["error"]["data"]["code"] == "response_too_large"
        assert post(gw, "demo", PING, {}).json()["result"] == {}  # the relay is still fine
    finally:
        relay.stop()


def test_bad_requests_get_json_rpc_errors_and_lose_nothing(keyed):
    gw = keyed
    relay = InProcessRelay(gw, relay_settings(gw, key="wk-mcp"))
    try:
        cases = [
            (post(gw, "demo", PING, {}), 401, "invalid_api_key"),
            (post(gw, "nope", PING), 404, "mcp_client_not_found"),
            (post(gw, "demo", b"{not json"), 400, "parse_error"),
            (post(gw, "demo", [PING]), 400, "batch_not_supported"),
            (post(gw, "demo", {"id": 1, "method": "ping"}), 400, "invalid_request"),
            (post(gw, "demo", {"jsonrpc": "2.0", "id": [1], "method": "x"}), 400,
             "invalid_request"),
        ]  # fmt: skip
        for response, status, code in cases:
            assert response.status_code == status, response.text
            body = response.json()
            assert body["jsonrpc"] == "2.0" and body["error"]["data"]["code"] == code
        assert cases[0][0].headers["www-authenticate"] == "Bearer"
        get = httpx.get(f"{gw.url}/mcp/demo", headers=API)
        assert get.status_code == 405 and get.headers["allow"] == "POST, DELETE"
        assert post(gw, "demo", PING).json() == {"jsonrpc": "2.0", "id": 7, "result": {}}
        client = gw.sync(lambda: gw.gateway.mcp.relays["demo"].to_dict(16))
        assert client["functions"] == {"ping": 1}  # refused before the relay: not calls
    finally:
        relay.stop()


def test_relay_token_is_passed_on_and_checked_by_the_relay(gateway):
    gw = gateway
    relay = InProcessRelay(gw, relay_settings(gw, token="relay-secret"))
    try:
        missing = post(gw, "demo", PING, {})
        assert missing.status_code == 401
        assert missing.json()["error"]["data"]["code"] == "relay_token_required"
        wrong = post(gw, "demo", PING, {"X-Relay-Token": "guess"})
        assert wrong.status_code == 403
        assert wrong.json()["error"]["data"]["code"] == "relay_token_invalid"
        assert "relay-secret" not in wrong.text
        right = post(gw, "demo", PING, {"X-Relay-Token": "relay-secret"})
        assert right.json()["result"] == {}
        state = httpx.get(f"{gw.url}/api/state").text
        assert "relay-secret" not in state
        client = json.loads(state)["mcp"]["clients"][0]
        assert client["token_required"] is True and client["errors"] == 2
    finally:
        relay.stop()


# ---- relays coming and going ------------------------------------------------------------


async def test_relay_killed_mid_call_fails_the_call_at_once(keyed):
    gw = keyed
    relay = CliRelay(gw, "demo", "--", *STDIO_COMMAND, key="wk-mcp")
    try:
        server_pid = int(relay.read_log_until(r"started MCP server .* \(pid (\d+)\)").group(1))
        await asyncio.to_thread(
            gw.wait_for, lambda g: "demo" in g.mcp.relays and g.mcp.relays["demo"].ready, 20
        )
        async with mcp_client(gw, headers=API) as session:
            await session.initialize()
            for name, value in (("GATEWAYTUI_WORKER_KEY", ""), ("PYTHONUNBUFFERED", "1")):
                env = await session.call_tool("getenv", {"name": name})
                assert env.structured_content == {"result": value}  # no secrets inherited
            call = asyncio.create_task(session.call_tool("hold", {"seconds": 60}))
            await asyncio.to_thread(gw.wait_for, lambda g: calls_in_flight(g, "tools/call") == 1)
            os.kill(relay.proc.pid, signal.SIGKILL)
            # At once: from the closed connection, within a bound (10 s) far below anything
            # else that would end the call (the 60 s hold, mcp.dead_after 30 s, the 2 min
            # call timeout), and the error says so (not "no frame for ...": the silence sweep).
            with pytest.raises(MCPError) as lost:
                await asyncio.wait_for(call, 10)
        assert lost.value.code == -32000 and lost.value.data == {"code": "relay_lost"}
        message = lost.value.error.message
        assert "went away during the call" in message and "no frame for" not in message
        client = gw.sync(lambda: gw.gateway.mcp.relays["demo"].to_dict(16))
        assert client["status"] == "gone" and client["inflight"] == 0
        assert "went away" in client["last_error"]
        after = post(gw, "demo", PING)
        assert after.status_code == 503
        assert after.json()["error"]["data"]["code"] == "relay_unavailable"
        deadline = time.monotonic() + 10  # the server saw its input close and exited
        while _alive(server_pid) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not _alive(server_pid), "the stdio MCP server outlived its relay"
    finally:
        relay.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie has exited too
        return fh.read().split(") ", 1)[1][0] != "Z"


async def test_duplicate_relay_id_is_refused_with_a_reason(gateway):
    gw = gateway
    relay = InProcessRelay(gw, relay_settings(gw))
    try:
        register = RelayRegisterFrame(id="demo", transport="stdio").model_dump_json()
        async with websockets.connect(f"{gw.ws_url}/api/mcp/connect") as ws:
            await ws.send(register)
            with pytest.raises(ConnectionClosed):
                await ws.recv()
        assert ws.close_code == 4009
        assert "mcp relay id 'demo' is already connected from 127.0.0.1:" in ws.close_reason
        events = httpx.get(f"{gw.url}/api/state").json()["events"]
        assert any(e["kind"] == "mcp_refuse" for e in events)
        assert (await asyncio.to_thread(post, gw, "demo", PING, {})).json()["result"] == {}
    finally:
        relay.stop()


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        (['{"type": "heartbeat"}'], "the first frame must be 'register'"),
        ([b"\x00binary"], "binary frames are not part of the MCP relay protocol"),
        (["{nope"], "malformed frame"),
        (["REGISTER", '{"type": "reply"}'], "malformed frame: reply.call_id"),
        (["REGISTER", "REGISTER"], "register may only be sent once per connection"),
    ],
    ids=["not-register-first", "binary", "invalid-json", "invalid-frame", "second-register"],
)
async def test_malformed_relay_frames_close_with_1008(gateway, frames, reason):
    gw = gateway
    register = RelayRegisterFrame(id="raw", transport="http").model_dump_json()
    async with websockets.connect(f"{gw.ws_url}/api/mcp/connect") as ws:
        for frame in frames:
            await ws.send(register if frame == "REGISTER" else frame)
        with pytest.raises(ConnectionClosed):
            while True:
                await ws.recv()
    assert ws.close_code == 1008 and reason in ws.close_reason
    assert httpx.get(f"{gw.url}/healthz").status_code == 200


async def test_worker_key_is_required_before_the_upgrade(keyed):
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(f"{keyed.ws_url}/api/mcp/connect"):
            pass
    assert refused.value.response.status_code == 401


async def test_silent_relay_is_dropped_and_a_heartbeating_one_stays(make_gateway):
    gw = make_gateway(mcp__heartbeat_interval="0.1s", mcp__dead_after="0.5s")
    relay = InProcessRelay(gw, relay_settings(gw))
    try:
        register = RelayRegisterFrame(id="silent", transport="stdio").model_dump_json()
        async with websockets.connect(f"{gw.ws_url}/api/mcp/connect") as ws:
            await ws.send(register)
            welcome = GATEWAY_RELAY_FRAME_ADAPTER.validate_json(await ws.recv())
            assert isinstance(welcome, RelayRegisteredFrame)
            assert (welcome.heartbeat_interval_s, welcome.dead_after_s) == (0.1, 0.5)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
        assert (ws.close_code, ws.close_reason) == (4008, "heartbeat expired")
        statuses = gw.sync(lambda: {r.id: r.status for r in gw.gateway.mcp.relays.values()})
        assert statuses == {"silent": "gone", "demo": "idle"}
    finally:
        relay.stop()


async def test_stdio_server_crash_fails_the_call_and_the_server_is_restarted(gateway):
    gw = gateway
    relay = InProcessRelay(gw, relay_settings(gw))
    try:
        async with mcp_client(gw) as session:
            await session.initialize()
            first = (await session.call_tool("pid", {})).structured_content["result"]
            with pytest.raises(MCPError) as crashed:
                await asyncio.wait_for(session.call_tool("crash", {}), 10)
            assert crashed.value.data == {"code": "upstream_exited"}

        def restarted(g) -> bool:  # reported not ready, then ready again
            statuses = [e for e in g.events.all() if e["kind"] == "mcp_status"]
            return len(statuses) >= 2 and g.mcp.relays["demo"].ready

        await asyncio.to_thread(gw.wait_for, restarted, 20)
        async with mcp_client(gw) as session:
            await session.initialize()
            second = (await session.call_tool("pid", {})).structured_content["result"]
        assert second != first
        client = gw.sync(lambda: gw.gateway.mcp.relays["demo"].to_dict(16))
        assert client["errors_by_method"] == {"tools/call": 1}
        assert "exited (code 3)" in client["last_error"]
    finally:
        relay.stop()


def test_relay_reconnects_with_backoff_when_the_gateway_comes_back(make_gateway):
    from gatewaytui.gateway.config import GatewayConfig
    from support.gateway_harness import RunningGateway

    first = make_gateway()
    port = first.port
    relay = CliRelay(first, "demo", "--", *STDIO_COMMAND)
    try:
        first.wait_for(lambda g: "demo" in g.mcp.relays and g.mcp.relays["demo"].ready, 20)
        first.stop()
        second = RunningGateway(GatewayConfig.build(), port=port)
        try:
            second.wait_for(lambda g: "demo" in g.mcp.relays and g.mcp.relays["demo"].ready, 20)
            assert post(second, "demo", PING, {}).json()["result"] == {}
        finally:
            second.stop()
        assert relay.proc.poll() is None  # still running, waiting for the next gateway
    finally:
        relay.stop()


def test_relay_cli_refuses_a_command_that_does_not_exist(gateway):
    relay = CliRelay(gateway, "demo", "--", "/nonexistent/mcp-server")
    try:
        assert relay.proc.wait(20) == 2
        relay.read_log_until(r"cannot run the MCP server command '/nonexistent/mcp-server'")
    finally:
        relay.stop()


# ---- frames -------------------------------------------------------------------------------


def test_frames_round_trip_and_server_info_is_read_leniently():
    frame = RELAY_FRAME_ADAPTER.validate_json(
        '{"type": "register", "id": "k8s", "transport": "http", "server": {"name": "k"}}'
    )
    assert isinstance(frame, RelayRegisterFrame) and frame.server.name == "k"
    with pytest.raises(ValueError):
        RELAY_FRAME_ADAPTER.validate_json('{"type": "register", "id": "a/b", "transport": "http"}')
    info = server_info_from_initialize(
        {"protocolVersion": "2025-11-25", "serverInfo": {"name": "s", "version": 3},
         "capabilities": {"tools": {}, "logging": {}}}
    )  # fmt: skip
    assert info is not None and (info.name, info.version) == ("s", "3")
    assert info.capabilities == ["logging", "tools"]
    assert server_info_from_initialize("nonsense") is None


async def test_gateway_holds_its_limits_against_a_relay_that_ignores_them(make_gateway):
    """A hand-written relay: a too-large reply fails only that call, a silent one times out,
    and each time the relay is told to cancel; a streamed answer arrives as SSE events."""
    gw = make_gateway(mcp__max_response_bytes=1000, mcp__call_timeout="0.5s")
    register = RelayRegisterFrame(id="raw", transport="http").model_dump_json()
    async with websockets.connect(f"{gw.ws_url}/api/mcp/connect") as ws:
        await ws.send(register)
        await ws.recv()  # registered

        async def next_call() -> dict:
            while True:
                frame = json.loads(await ws.recv())
                if frame["type"] == "call":
                    return frame

        big = asyncio.create_task(asyncio.to_thread(post, gw, "raw", PING, {}))
        call = await next_call()
        reply = {"jsonrpc": "2.0", "id": 7, "result": {"pad": "x" * 2000}}
        await ws.send(json.dumps({"type": "reply", "call_id": call["call_id"], "message": reply}))
        response = await big
        assert response.status_code == 502
        assert response.json()["error"]["data"]["code"] == "response_too_large"
        cancel = json.loads(await ws.recv())
        assert cancel == {
            "type": "cancel",
            "call_id": call["call_id"],
            "reason": "response too large",
        }

        slow = asyncio.create_task(asyncio.to_thread(post, gw, "raw", PING, {}))
        call = await next_call()
        response = await slow  # no answer at all
        assert response.status_code == 504
        assert response.json()["error"] == {
            "code": -32001,
            "message": "MCP relay 'raw' did not answer within 0.5s (mcp.call_timeout)",
            "data": {"code": "call_timeout"},
        }
        cancel = json.loads(await ws.recv())
        assert (cancel["type"], cancel["call_id"]) == ("cancel", call["call_id"])

        streamed = asyncio.create_task(asyncio.to_thread(post, gw, "raw", PING, {}))
        call = await next_call()
        progress = {"jsonrpc": "2.0", "method": "notifications/progress",
                    "params": {"progressToken": 1, "progress": 1}}  # fmt: skip
        for frame in (
            {"type": "event", "call_id": call["call_id"], "message": progress,
             "headers": {"mcp-session-id": "s1", "set-cookie": "no"}},
            {"type": "event", "call_id": call["call_id"],
             "message": {"jsonrpc": "2.0", "id": 7, "result": {}}},
            {"type": "end", "call_id": call["call_id"]},
        ):  # fmt: skip
            await ws.send(json.dumps(frame))
        response = await streamed
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["mcp-session-id"] == "s1" and "set-cookie" not in response.headers
        events = [
            json.loads(line[6:]) for line in response.text.splitlines() if line[:6] == "data: "
        ]
        assert events == [progress, {"jsonrpc": "2.0", "id": 7, "result": {}}]
    client = gw.sync(lambda: gw.gateway.mcp.relays["raw"].to_dict(16))
    assert (client["calls"], client["errors"], client["status"]) == (3, 2, "gone")


def test_a_server_that_does_not_start_shows_not_ready_with_the_reason(gateway):
    gw = gateway
    settings = relay_settings(gw, "broken", command=[sys.executable, "-c", "pass"])
    relay = InProcessRelay(gw, settings, wait_ready=False)
    try:
        gw.wait_for(
            lambda g: "did not start" in (getattr(g.mcp.relays.get("broken"), "reason", 0) or ""),
            20,
        )
        response = post(gw, "broken", PING, {})
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["data"]["code"] == "relay_not_ready"
        assert "did not start: it exited with code 0 before initializing" in error["message"]
        client = httpx.get(f"{gw.url}/api/state").json()["mcp"]["clients"][0]
        assert client["status"] == "not_ready" and "did not start" in client["status_reason"]
    finally:
        relay.stop()


async def test_server_drain_refuses_new_mcp_calls_and_waits_for_those_in_flight(gateway):
    gw = gateway
    relay = InProcessRelay(gw, relay_settings(gw))
    hold = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "hold", "arguments": {"seconds": 60}}}  # fmt: skip
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            held = asyncio.create_task(http.post(f"{gw.url}/mcp/demo", json=hold))
            await asyncio.to_thread(gw.wait_for, lambda g: calls_in_flight(g, "tools/call") == 1)
            drain = await http.post(f"{gw.url}/api/server/drain", json={"timeout_s": 30})
            assert drain.json()["ok"] is True
            refused = await http.post(f"{gw.url}/mcp/demo", json=PING)
            assert refused.status_code == 503
            assert refused.json()["error"]["data"]["code"] == "server_draining"
            kinds = [e["kind"] for e in (await http.get(f"{gw.url}/api/state")).json()["events"]]
            assert "server_drained" not in kinds  # the call in flight holds the drain open
            held.cancel()  # its client leaves: the call ends, and with it the drain
            await asyncio.gather(held, return_exceptions=True)

            def drained(g) -> bool:
                return any(e["kind"] == "server_drained" for e in g.events.all())

            await asyncio.to_thread(gw.wait_for, drained)
            (event,) = [e for e in gw.sync(gw.gateway.events.all) if e["kind"] == "server_drained"]
            assert event["message"] == "server drained"
    finally:
        relay.stop()


async def test_relay_drain_finishes_calls_in_flight_and_refuses_new_ones(gateway):
    gw = gateway
    relay = InProcessRelay(gw, relay_settings(gw, drain_timeout_s=20))
    hold = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "hold", "arguments": {"seconds": 8}}}  # fmt: skip
    async with httpx.AsyncClient(timeout=30) as http:
        held = asyncio.create_task(http.post(f"{gw.url}/mcp/demo", json=hold))
        await asyncio.to_thread(gw.wait_for, lambda g: calls_in_flight(g, "tools/call") == 1)
        relay.request_stop()  # what SIGTERM does
        await asyncio.to_thread(
            gw.wait_for, lambda g: g.mcp.relays["demo"].reason == "relay draining"
        )
        refused = await http.post(f"{gw.url}/mcp/demo", json=PING)
        assert refused.status_code == 503
        assert refused.json()["error"]["data"]["code"] == "relay_not_ready"
        done = await held
        assert done.status_code == 200 and done.json()["result"]["structuredContent"] == {
            "result": "held"
        }
    assert await asyncio.to_thread(relay.stop) == 0
    client = gw.sync(lambda: gw.gateway.mcp.relays["demo"].to_dict(16))
    assert client["status"] == "gone"
    events = [e for e in gw.sync(gw.gateway.events.all) if e["kind"] == "mcp_disconnect"]
    assert events[-1]["level"] == "info"  # a clean close (1000)


async def test_operator_disconnects_a_relay_which_reconnects_by_itself(gateway):
    """`POST /api/mcp/{id}/disconnect`: the relay's connection closes (1012) and the relay
    dials in again; an unknown id is a 404, as for every other action."""
    gw = gateway
    relay = InProcessRelay(gw, relay_settings(gw))
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.post(f"{gw.url}/api/mcp/demo/disconnect")
            assert answer.status_code == 200, answer.text
            assert answer.json()["target"] == "demo"
            assert "reconnects by itself" in answer.json()["message"]
            await asyncio.to_thread(
                gw.wait_for,
                lambda g: (
                    g.mcp.relays["demo"].counters.reconnects == 1
                    and g.mcp.relays["demo"].status == "idle"
                ),
            )
            kinds = [e["kind"] for e in gw.sync(gw.gateway.events.all)]
            assert "mcp_disconnect" in kinds
            again = await http.post(f"{gw.url}/mcp/demo", json=PING)
            assert again.status_code == 200 and again.json()["result"] == {}
            missing = await http.post(f"{gw.url}/api/mcp/nobody/disconnect")
            assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    finally:
        assert relay.stop() == 0
