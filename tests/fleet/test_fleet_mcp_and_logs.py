"""Requests about an item held by another replica: an MCP client (the official `mcp` SDK)
reaches a relay connected to r1 through r2; the MCP disconnect action and a worker's logs
(once, and followed) through a non-owner; 404 for an id nobody owns, 504 for a silent owner."""

from __future__ import annotations

import asyncio
import signal
import threading
from pathlib import Path
from typing import Any

import httpx

from gatewaytui.client.http import GatewayClient
from gatewaytui.schema.api import WorkerLogs
from support.fleet import Process, Replica, Worker, wait_until, workers_by_id
from support.mcp_peers import STDIO_COMMAND, mcp_client

PING = {"jsonrpc": "2.0", "id": 7, "method": "ping"}


def _mcp_client(replica: Replica, client_id: str) -> dict[str, Any] | None:
    clients = replica.state()["mcp"]["clients"]
    return next((c for c in clients if c["id"] == client_id), None)


def _relay_on(replica: Replica, client_id: str, owner: str) -> bool:
    client = _mcp_client(replica, client_id)
    return client is not None and client["replica"] == owner and client["status"] == "idle"


def _relay(replica: Replica, tmp_path: Path, procs: list[Any], seen_from: Replica) -> None:
    """`gatewaytui mcp-relay` (the demo MCP server over stdio) dialled in to `replica`, its
    output in a file; returns once `seen_from` shows it idle on `replica`."""
    argv = ["--log-level", "warning", "mcp-relay", "--gateway", replica.url, "--id", "tools"]
    relay = Process([*argv, "--", *STDIO_COMMAND], tmp_path / "relay-tools.log")
    procs.append(relay)
    try:  # a relay starts a Python MCP server: slow on a loaded box
        wait_until(lambda: _relay_on(seen_from, "tools", replica.id), 60, "the relay, seen")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nrelay output:\n{relay.output()}") from None


def test_an_mcp_client_reaches_a_relay_on_another_replica(
    fleet: Any, procs: list[Any], tmp_path: Path
) -> None:
    replicas, _ = fleet
    r1, r2, r3 = replicas
    _relay(r1, tmp_path, procs, seen_from=r2)

    async def session_through_r2() -> tuple[Any, Any, list[float]]:
        async with mcp_client(r2, "tools") as session:  # type: ignore[arg-type]
            await session.initialize()
            tools = await session.list_tools()
            added = await session.call_tool("add", {"a": 2, "b": 40})
            progress: list[float] = []

            async def on_progress(value: float, total: float | None, message: str | None) -> None:
                progress.append(value)

            await session.call_tool("count", {"n": 3}, progress_callback=on_progress)
            return tools, added, progress

    tools, added, progress = asyncio.run(session_through_r2())
    assert {"add", "hold", "count"} <= {t.name for t in tools.tools}
    assert added.structured_content == {"result": 42}
    assert progress == [1.0, 2.0, 3.0]  # the owner's SSE events, passed through as they came
    # The calls ran on r1, the relay's replica.
    on_r1 = _mcp_client(r1, "tools")
    assert on_r1 is not None and on_r1["functions"]["tools/call"] == 2

    raw = httpx.post(r3.url + "/mcp/tools", json=PING, timeout=10)
    assert raw.status_code == 200 and raw.json()["result"] == {}
    assert raw.headers["x-gatewaytui-replica"] == "r1"
    nobody = httpx.post(r2.url + "/mcp/nobody", json=PING, timeout=10)
    assert nobody.status_code == 404 and nobody.json()["error"]["code"] == -32004

    # The operator's action on the MCP client, through a replica that does not hold it.
    answer = r3.post("/api/mcp/tools/disconnect")
    assert answer.status_code == 200, answer.text
    assert answer.json()["details"]["replica"] == "r1"

    def reconnected() -> bool:
        client = _mcp_client(r2, "tools")
        return client is not None and client["reconnects"] >= 1 and client["status"] == "idle"

    wait_until(reconnected, 40, "the relay to reconnect (seen from r2)")
    missing = r2.post("/api/mcp/nobody/disconnect")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_worker_logs_through_a_non_owner_replica(
    fleet: Any, procs: list[Any], tmp_path: Path
) -> None:
    replicas, _ = fleet
    r1, r2, r3 = replicas
    procs.append(Worker("w1", r1, tmp_path, "--models", "m-fleet", log_level="info"))
    wait_until(lambda: "w1" in workers_by_id(r2.state()), 15, "r2 to see w1")

    once = httpx.get(r2.url + "/api/workers/w1/logs?tail=50", timeout=10)
    assert once.status_code == 200, once.text
    assert once.headers["x-gatewaytui-replica"] == "r1"
    logs = WorkerLogs.model_validate(once.json())
    assert any("worker w1: registered with" in line.message for line in logs.lines)
    assert httpx.get(r2.url + "/api/workers/w1/logs?tail=-1", timeout=10).status_code == 422
    nobody = httpx.get(r2.url + "/api/workers/nobody/logs", timeout=10)
    assert nobody.status_code == 404

    async def follow_through_r2() -> list[str]:
        seen: list[str] = []
        async with GatewayClient(r2.url) as client:
            stream = client.follow_worker_logs("w1", tail=5)
            first = await anext(stream)
            assert isinstance(first, WorkerLogs)
            async with GatewayClient(r3.url) as ops:
                await ops.drain_worker("w1")  # the worker logs that the gateway drained it
            async with asyncio.timeout(10):
                async for batch in stream:
                    assert isinstance(batch, WorkerLogs)
                    seen.extend(line.message for line in batch.lines)
                    if any("drained this worker" in m for m in seen):
                        break
            await stream.aclose()
        return seen

    assert any("the gateway drained this worker" in m for m in asyncio.run(follow_through_r2()))


def test_a_silent_owner_is_a_504(fleet: Any, procs: list[Any], tmp_path: Path) -> None:
    """r1 stopped (SIGSTOP) but still registered: requests about its worker and its relay
    wait `cluster.command_timeout` (3 s here) and answer 504, they do not hang."""
    replicas, worker = fleet
    r1, r2, _ = replicas
    worker("w1", r1)
    _relay(r1, tmp_path, procs, seen_from=r2)
    wait_until(lambda: "w1" in workers_by_id(r2.state()), 15, "r2 to see w1")
    answers: dict[str, httpx.Response] = {}

    def ask(name: str, method: str, path: str) -> None:
        answers[name] = httpx.request(method, r2.url + path, timeout=15)

    asks = [
        threading.Thread(target=ask, args=("logs", "GET", "/api/workers/w1/logs")),
        threading.Thread(target=ask, args=("disconnect", "POST", "/api/mcp/tools/disconnect")),
    ]
    r1.signal(signal.SIGSTOP)
    try:
        for thread in asks:
            thread.start()
        for thread in asks:
            thread.join(15)
    finally:
        r1.signal(signal.SIGCONT)
    assert answers["logs"].status_code == 504, answers["logs"].text
    assert answers["logs"].json()["error"]["code"] == "owner_timeout"
    assert answers["disconnect"].status_code == 504, answers["disconnect"].text
