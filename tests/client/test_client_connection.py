"""GatewayConnection against real gateways (mirror, restart on the same port, auth) and against
a scripted stream server (gaps, malformed deltas, silence, backoff, coalesced updates)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.server import ServerConnection, serve

from gatewaytui.client import (
    Backoff,
    Change,
    ConnectionState,
    ConnectionStatus,
    GatewayClient,
    GatewayConnection,
    Session,
    StateStore,
)
from gatewaytui.gateway.config import GatewayConfig
from support.gateway_harness import RunningGateway
from support.raw_worker import RawWorker

LIVE = ConnectionStatus.LIVE
FAST = {"backoff_base": 0.02, "backoff_cap": 0.1}


class Recorder:
    """Listener callbacks that tests can await (no sleeping for synchronisation)."""

    def __init__(self) -> None:
        self.changes: list[Change] = []
        self.states: list[ConnectionState] = []
        self._signal = asyncio.Event()

    def change(self, change: Change) -> None:
        self.changes.append(change)
        self._poke()

    def state(self, state: ConnectionState) -> None:
        self.states.append(state)
        self._poke()

    def _poke(self) -> None:
        self._signal.set()
        self._signal = asyncio.Event()

    async def until(self, predicate: Callable[[], bool], timeout: float = 5) -> None:
        async def wait() -> None:
            while not predicate():
                await self._signal.wait()

        await asyncio.wait_for(wait(), timeout)

    def statuses(self) -> list[ConnectionStatus]:
        return [s.status for s in self.states]


def connection(url: str, rec: Recorder, token: str | None = None, **options: Any):
    return GatewayConnection(url, token, on_change=rec.change, on_state=rec.state, **options)


def mirror_of(store: StateStore) -> dict[str, Any]:
    state = store.to_state_dict()
    return comparable(state)


def comparable(state: dict[str, Any]) -> dict[str, Any]:
    """A state without its envelope, items keyed by id (order is not part of the contract)."""
    keyed = {
        name: {item["id"]: item for item in state[name]}
        for name in ("workers", "jobs", "models", "backends", "plugins")
    }
    keyed["mcp"] = {k: {i["id"]: i for i in v} for k, v in state["mcp"].items()}
    keyed["server"] = state["server"]
    keyed["event_ids"] = [e["id"] for e in state["events"]]
    return keyed


async def settle(conn: GatewayConnection, rec: Recorder, client: GatewayClient) -> None:
    """Wait until the store equals `GET /api/state` (re-checking after each applied change)."""
    for _ in range(50):
        seen = len(rec.changes)
        expected = comparable(await client.state_json())
        if mirror_of(conn.store) == expected:
            return
        await rec.until(lambda seen=seen: len(rec.changes) > seen)
    raise AssertionError("store never matched GET /api/state")


async def test_snapshot_and_deltas_mirror_the_gateway(gateway: RunningGateway):
    w1 = RawWorker(gateway.ws_url, "w1", ["chat-m"], max_concurrency=2)
    rec = Recorder()
    async with GatewayClient(gateway.url) as client, connection(gateway.url, rec) as conn:
        await conn.wait_status(LIVE, timeout=5)
        await settle(conn, rec, client)
        assert "w1" in conn.store.workers

        w2 = RawWorker(gateway.ws_url, "w2", ["embed-m"], labels={"zone": "b"})
        w1.heartbeat()
        w2.status(ready=True)
        async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
            request = asyncio.create_task(
                http.post(
                    "/v1/chat/completions",
                    json={"model": "chat-m", "messages": [{"role": "user", "content": "hi"}]},
                )
            )
            job = await asyncio.to_thread(w1.next_job)
            await rec.until(lambda: len(conn.store.jobs) == 1)
            await settle(conn, rec, client)
            (listed,) = conn.store.jobs.values()
            assert listed["model"] == "chat-m" and listed["worker"] == "w1"
            assert conn.store.workers["w1"]["inflight"] == 1

            await client.drain_worker("w2")
            w1.reply_chat(job)
            assert (await request).status_code == 200
        await rec.until(lambda: not conn.store.jobs)
        w2.close()
        await rec.until(lambda: conn.store.workers["w2"]["status"] == "gone")
        await settle(conn, rec, client)
        assert conn.store.workers["w1"]["processed"] == 1
        assert conn.store.workers["w2"]["draining"] is True
        assert conn.store.models["chat-m"]["ready_workers"] == 1
        assert conn.connections == 1 and conn.resyncs == 0 and conn.dead_after == 15
    w1.close()


async def test_reconnects_to_a_restarted_gateway_without_stale_rows():
    with socket.socket() as probe:  # a free port both gateways will use in turn
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    old = RunningGateway(GatewayConfig.build(), port=port)
    new: RunningGateway | None = None
    rec = Recorder()
    conn = connection(old.url, rec, **FAST)
    try:
        worker = RawWorker(old.ws_url, "old-worker", ["m"])
        conn.start()
        await rec.until(lambda: "old-worker" in conn.store.workers)

        await asyncio.to_thread(old.stop)
        await conn.wait_status(ConnectionStatus.RECONNECTING, timeout=5)
        await rec.until(lambda: any(s.next_retry_at and s.attempt >= 2 for s in rec.states))
        waiting = [s for s in rec.states if s.status is ConnectionStatus.RECONNECTING]
        assert waiting[0].last_error in ("gateway restarting (1012)", "connection lost")
        assert all(s.since == waiting[0].since for s in waiting)  # one outage, one `since`
        assert any(s.last_error == "connection refused" for s in waiting)
        retry = next(s for s in waiting if s.next_retry_at is not None)
        assert retry.next_retry_at >= retry.since

        new = RunningGateway(GatewayConfig.build(), port=port)
        fresh = RawWorker(new.ws_url, "new-worker", ["m"])
        await conn.wait_status(LIVE, timeout=5)
        await rec.until(lambda: "new-worker" in conn.store.workers)
        assert "old-worker" not in conn.store.workers
        assert conn.state.attempt == 0 and conn.state.last_error is None
        assert conn.connections == 2
        fresh.close()
        worker.close()
    finally:
        await conn.stop()
        if new is not None:
            await asyncio.to_thread(new.stop)


async def test_a_wrong_token_is_unauthorized_and_not_retried(make_gateway):
    gw = make_gateway(
        server__operator_tokens="act", server__viewer_tokens="look", server__state_keepalive="20s"
    )
    rec = Recorder()
    conn = connection(gw.url, rec, "wrong", backoff_base=0.001, backoff_cap=0.001)
    conn.start()
    state = await conn.wait_done(timeout=5)
    assert state.status is ConnectionStatus.UNAUTHORIZED and state.http_status == 401
    assert state.last_error == "HTTP 401: invalid or missing operator token"
    assert rec.statuses() == [ConnectionStatus.CONNECTING, ConnectionStatus.UNAUTHORIZED]
    assert state.next_retry_at is None and conn.connections == 0

    viewer = GatewayConnection(gw.url, "look")
    async with viewer:
        await viewer.wait_status(LIVE, timeout=5)
        assert viewer.dead_after == 60  # silence is judged by the gateway's keep-alive (20 s)


async def test_unreachable_gateway_reports_the_retry_countdown():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"  # nothing listens once closed
    rec = Recorder()
    session = Session.live(
        "lab", url, on_state=rec.state, backoff_base=5, backoff_cap=5, rng=random.Random(1)
    )
    session.start()
    try:
        await rec.until(lambda: session.state.next_retry_at is not None)
        state = session.state
        assert state.status is ConnectionStatus.CONNECTING  # never live yet
        assert state.attempt == 1 and state.last_error == "connection refused"
        assert 0 <= state.retry_in() <= 5
        line = session.status_line(now=state.next_retry_at - 3)
        assert line.startswith(f"lab: connecting to {url} since ")
        assert "retry in 3 s (attempt 2)" in line and "last error: connection refused" in line
        session.retry_now()  # skips the wait: a second refusal follows at once
        await rec.until(lambda: session.state.attempt == 2, timeout=15)
    finally:
        await session.stop()
    assert session.state.status is ConnectionStatus.STOPPED
    assert session.status_line() == "lab: disconnected"


# -- a scripted stream server -------------------------------------------------------------


def state_with(workers: list[str], seq: int) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "generated_at": "2026-11-21T09:30:00.000Z",
        "seq": seq,
        "server": {"version": "t", "status": "ready", "started_at": "2026-11-21T09:00:00.000Z"},
        "workers": [{"id": w, "name": w, "status": "idle"} for w in workers],
    }


def snap(workers: list[str], seq: int) -> str:
    return json.dumps({"type": "snapshot", "seq": seq, "state": state_with(workers, seq)})


def dlt(seq: int, **parts: Any) -> str:
    return json.dumps({"type": "delta", "seq": seq, "ts": "2026-11-21T09:30:01.000Z", **parts})


Script = Callable[[ServerConnection, int], Any]


@contextlib.asynccontextmanager
async def scripted(script: Script) -> AsyncIterator[str]:
    """A stream server that runs `script(ws, n)` for its n-th connection (from 1)."""
    count = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal count
        count += 1
        await script(ws, count)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (dlt(3), "resync: missed deltas (expected seq 2, got 3)"),
        (dlt(2, upsert={"workers": [{"status": "idle"}]}), "has an item without a string id"),
        (dlt(2, upsert={"workers": [{"id": "x", "status": "idle"}]}), "new item 'x' lacks name"),
        (json.dumps({"type": "keepalive", "seq": 4, "ts": "2026"}), "expected seq 2, got 4"),
    ],
)
async def test_gaps_and_malformed_deltas_resync_with_a_fresh_snapshot(bad: str, reason: str):
    async def script(ws: ServerConnection, n: int) -> None:
        if n == 1:
            await ws.send(snap(["first"], 1))
            await ws.send(bad)
        else:
            await ws.send(snap(["second"], 7))
            await ws.send(dlt(8, upsert={"workers": [{"id": "second", "status": "working"}]}))

    rec = Recorder()
    async with scripted(script) as url, connection(url, rec, **FAST) as conn:
        await rec.until(lambda: conn.store.seq == 8)
        assert list(conn.store.workers) == ["second"]
        assert conn.store.workers["second"]["status"] == "working"
        assert conn.resyncs == 1 and conn.connections == 2
        resync = next(s for s in rec.states if s.status is ConnectionStatus.RECONNECTING)
        assert reason in resync.last_error
        assert resync.next_retry_at == pytest.approx(resync.since, abs=0.05)  # at once
        assert conn.state.status is LIVE


async def test_a_silent_stream_is_presumed_dead():
    async def script(ws: ServerConnection, n: int) -> None:
        await ws.send(snap([f"gw{n}"], 1))  # and then nothing, not even keep-alives

    rec = Recorder()
    options = {**FAST, "keepalive": 0.05, "dead_after_keepalives": 3}
    async with scripted(script) as url, connection(url, rec, **options) as conn:
        await rec.until(lambda: "gw2" in conn.store.workers)
        dead = next(s for s in rec.states if s.status is ConnectionStatus.RECONNECTING)
        assert dead.last_error == "no message for 0.15 s (keep-alives missed)"


async def test_a_bad_snapshot_is_reported_and_retried_with_backoff():
    async def script(ws: ServerConnection, n: int) -> None:
        if n == 1:
            await ws.send(json.dumps({"type": "snapshot", "seq": 1, "state": {"workers": 3}}))
        else:
            await ws.send(snap(["ok"], 1))

    rec = Recorder()
    async with scripted(script) as url, connection(url, rec, **FAST) as conn:
        await conn.wait_status(LIVE, timeout=5)
        failed = next(s for s in rec.states if s.last_error)
        assert failed.status is ConnectionStatus.CONNECTING
        assert failed.last_error.startswith("bad message from gateway: not a valid gateway state")
        assert "server: Field required" in failed.last_error
        assert list(conn.store.workers) == ["ok"] and conn.resyncs == 0


@pytest.mark.parametrize(("stable_after", "grows"), [(0.0, False), (3600.0, True)])
async def test_backoff_resets_only_after_a_stable_connection(stable_after: float, grows: bool):
    async def script(ws: ServerConnection, n: int) -> None:
        await ws.send(snap(["w"], n))
        await ws.close()  # every connection drops right after its snapshot

    rec = Recorder()
    options = {**FAST, "stable_after": stable_after}
    async with scripted(script) as url, connection(url, rec, **options) as conn:
        await rec.until(lambda: conn.connections >= 4)
        attempts = [s.attempt for s in rec.states if s.next_retry_at is not None]
        if grows:
            assert attempts[:3] == [1, 2, 3]
        else:
            assert set(attempts) == {1}


def test_backoff_is_capped_exponential_with_full_jitter():
    backoff = Backoff(0.5, 30, random.Random(7))
    assert [backoff.ceiling(n) for n in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert backoff.ceiling(10_000) == 30
    draws = [backoff.delay(3) for _ in range(500)]
    assert 0 <= min(draws) < 0.5 and 3.5 < max(draws) <= 4  # spread over the whole range


async def test_updates_are_coalesced_and_quiet_when_nothing_changed():
    release = asyncio.Event()

    async def script(ws: ServerConnection, n: int) -> None:
        await ws.send(snap(["a"], 1))
        for seq, name in enumerate(["b", "c", "d"], start=2):
            await ws.send(
                dlt(seq, upsert={"workers": [{"id": name, "name": name, "status": "idle"}]})
            )
        await ws.send(dlt(5, upsert={"workers": [{"id": "a", "status": "working"}]}))
        await release.wait()
        await ws.send(json.dumps({"type": "keepalive", "seq": 5, "ts": "2026"}))
        await ws.send(dlt(6, upsert={"workers": [{"id": "b", "status": "idle"}]}))  # no-op
        await ws.send(dlt(7, remove={"workers": ["c"]}))

    rec = Recorder()
    async with scripted(script) as url, connection(url, rec) as conn:
        updates = conn.updates()
        first = await anext(updates)
        assert first.state_changed and first.change is None
        await rec.until(lambda: conn.store.seq == 5)
        update = await anext(updates)  # everything so far, in one
        assert update.state.status is LIVE and update.state_changed
        assert update.change is not None and update.change.seq == 5
        assert update.change.added == {"workers": {"a", "b", "c", "d"}}  # a's change folds in
        release.set()
        await rec.until(lambda: conn.store.seq == 7)
        update = await anext(updates)
        assert not update.state_changed
        assert update.change.removed == {"workers": {"c"}} and not update.change.changed
        assert [c.seq for c in rec.changes] == [1, 2, 3, 4, 5, 7]  # keep-alive, no-op: silent
        stopping = asyncio.ensure_future(anext(updates))
    last = await stopping
    assert last.state.status is ConnectionStatus.STOPPED
    with pytest.raises(StopAsyncIteration):
        await anext(updates)


async def test_a_late_subscriber_first_gets_everything():
    async def script(ws: ServerConnection, n: int) -> None:
        await ws.send(snap(["a", "b"], 1))

    rec = Recorder()
    async with scripted(script) as url, connection(url, rec) as conn:
        await rec.until(lambda: conn.store.seq == 1)
        first = await anext(conn.updates())
        assert first.state.status is LIVE and first.change is not None
        assert first.change.snapshot and first.change.added == {"workers": {"a", "b"}}
