"""Worker connection lifecycle against a real WebSocket peer: cancel, drain, reconnect, auth."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator

import pytest

from gatewaytui.schema.protocol import (
    CLOSE_DUPLICATE_ID,
    CancelFrame,
    ChunkFrame,
    ErrorFrame,
    RegisterFrame,
    ResultFrame,
    StatusFrame,
)
from gatewaytui.workers import (
    BackoffSettings,
    SimulateSettings,
    WorkerClient,
    run_workers,
)
from support.worker_peers import (
    FakeGateway,
    GateHandler,
    GatewayConn,
    running_worker,
    within,
    worker_settings,
)

MESSAGES = [{"role": "user", "content": "hello"}]


async def test_cancel_stops_a_streaming_job_and_sends_nothing_more_for_it() -> None:
    # 20 tokens/s and 10,000 tokens: the job would run for minutes if the cancel were lost.
    sim = SimulateSettings(latency_s=0, tokens_per_second=20, max_tokens=10_000)
    async with FakeGateway() as gw, running_worker(worker_settings(gw.url, simulate=sim)) as w:
        conn = await gw.accept()
        await conn.status()
        await conn.job("long", {"messages": MESSAGES}, stream=True)
        role = await conn.next()
        first_text = await conn.next()
        assert isinstance(role, ChunkFrame) and isinstance(first_text, ChunkFrame)

        await conn.send(CancelFrame(job_id="long", reason="client went away"))
        await within(w.idle.wait())
        assert w.inflight == 0

        await conn.job("after", {"messages": MESSAGES, "max_tokens": 1})
        frames = []
        while not isinstance(frame := await conn.next(), ResultFrame):
            frames.append(frame)
    assert frame.job_id == "after"
    # Chunks already on the wire may still arrive, but never a result or error for "long".
    assert all(isinstance(f, ChunkFrame) for f in frames if f.job_id == "long")


async def test_drain_waits_for_in_flight_jobs_then_closes_1000() -> None:
    handler = GateHandler()
    async with FakeGateway() as gw:
        async with running_worker(worker_settings(gw.url), handler) as client:
            conn = await gw.accept()
            await conn.status()
            await conn.job("inflight", {"messages": MESSAGES}, model="gate")
            await within(handler.started.get())

            drain = asyncio.create_task(client.drain())
            status = await conn.status()
            assert (status.ready, status.reason, status.draining) == (
                False,
                "worker draining",
                True,
            )

            await conn.job("late", {"messages": MESSAGES}, model="gate")
            _, refused = await conn.outcome("late")
            assert isinstance(refused, ErrorFrame)
            assert (refused.status, refused.code) == (503, "draining")
            assert not drain.done()

            handler.gate.set()
            _, result = await conn.outcome("inflight")
            assert isinstance(result, ResultFrame)
            assert await conn.wait_closed() == (1000, "worker drained")
            await within(drain)
            assert client.stopped.is_set() and client.exit_code == 0
        assert gw.conns.empty()  # it did not come back


async def test_drain_timeout_cancels_stuck_jobs_and_still_closes_1000() -> None:
    handler = GateHandler()
    async with (
        FakeGateway() as gw,
        running_worker(worker_settings(gw.url, drain_timeout_s=0.05), handler) as client,
    ):
        conn = await gw.accept()
        await conn.status()
        await conn.job("stuck", {"messages": MESSAGES}, model="gate")
        await within(handler.started.get())
        await within(client.drain())
        assert await within(handler.cancelled.get()) == "stuck"
        assert (await conn.wait_closed())[0] == 1000
        await conn.status()  # the draining report
        assert conn.frames.empty()  # no result or error for the cancelled job


async def test_reconnects_with_backoff_and_cancels_jobs_of_the_lost_connection() -> None:
    handler = GateHandler()
    async with FakeGateway() as gw, running_worker(worker_settings(gw.url), handler) as client:
        first = await gw.accept()
        await first.status()
        await first.job("orphan", {"messages": MESSAGES}, model="gate")
        await within(handler.started.get())

        await first.ws.close(1011, "gateway hiccup")
        assert await within(handler.cancelled.get()) == "orphan"
        second = await gw.accept()
        await second.status()

        assert second.register.id == first.register.id
        (ended,) = client.sessions
        assert ended.registered and (ended.code, ended.reason) == (1011, "gateway hiccup")
        assert client.last_delay_s is not None and 0 <= client.last_delay_s <= 0.01
        assert client.inflight == 0


async def test_duplicate_id_close_is_logged_and_retried(caplog) -> None:
    caplog.set_level(logging.INFO, logger="gatewaytui.workers")

    def refuse_first_two(reg: RegisterFrame, attempt: int) -> tuple[int, str] | None:
        if attempt <= 2:
            return CLOSE_DUPLICATE_ID, f"worker id {reg.id} is already connected"
        return None

    async with (
        FakeGateway(on_register=refuse_first_two) as gw,
        running_worker(worker_settings(gw.url, id="dup")) as client,
    ):
        conn = await gw.accept()
        await conn.status()
        assert gw.attempts == 3
        assert [(s.code, s.registered) for s in client.sessions] == [(4009, False)] * 2
        assert client.backoff.attempt == 2

    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("code 4009" in m and "worker id dup is already connected" in m for m in logged) == 2
    assert any("unique id" in m for m in logged)


async def test_backoff_resets_after_a_stable_connection() -> None:
    def refuse_twice(reg: RegisterFrame, attempt: int) -> tuple[int, str] | None:
        return (CLOSE_DUPLICATE_ID, "dup") if attempt <= 2 else None

    backoff = BackoffSettings(base_s=0.01, cap_s=0.02, stable_after_s=0)
    async with (
        FakeGateway(on_register=refuse_twice) as gw,
        running_worker(worker_settings(gw.url, backoff=backoff)) as client,
    ):
        conn = await gw.accept()
        assert client.backoff.attempt == 2
        await conn.ws.close(1011, "drop")
        await gw.accept()
        # The stable session reset the count before the one delay it then drew.
        assert client.backoff.attempt == 1


async def test_bad_key_is_reported_without_leaking_it_and_gives_up(caplog) -> None:
    # DEBUG: websockets logs handshake headers then, through the worker's own logger.
    caplog.set_level(logging.DEBUG, logger="gatewaytui")
    async with FakeGateway(key="right-key") as gw:
        settings = worker_settings(gw.url, key="wrong-key-123", max_connect_failures=2)
        code = await within(run_workers(settings))

    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("gatewaytui"))
    assert code == 1
    assert gw.rejected_handshakes == 2
    assert "HTTP 401" in ours and "bad or missing worker key" in ours
    assert "giving up after 2 failed connection attempts" in ours
    assert "wrong-key-123" not in ours
    assert "Authorization: <redacted>" in ours


async def test_run_workers_runs_a_fleet_and_drains_it_on_stop() -> None:
    stop = asyncio.Event()
    async with FakeGateway() as gw:
        settings = worker_settings(gw.url, id="sim", name="Sim", count=3)
        runner = asyncio.create_task(run_workers(settings, stop))
        conns = [await gw.accept() for _ in range(3)]
        assert sorted(c.register.id for c in conns) == ["sim-1", "sim-2", "sim-3"]
        assert sorted(c.register.name for c in conns) == ["Sim-1", "Sim-2", "Sim-3"]

        stop.set()
        assert await within(runner) == 0
        for conn in conns:
            assert await conn.wait_closed() == (1000, "worker drained")


async def test_stop_closes_1001_and_cancels_jobs() -> None:
    handler = GateHandler()
    async with FakeGateway() as gw, running_worker(worker_settings(gw.url), handler) as client:
        conn = await gw.accept()
        await conn.status()
        await conn.job("j", {"messages": MESSAGES}, model="gate")
        await within(handler.started.get())
        await within(client.stop())
        assert await within(handler.cancelled.get()) == "j"
        assert await conn.wait_closed() == (1001, "worker stopping")
        assert client.stopped.is_set()


async def test_connection_refused_is_retried_until_the_failure_limit() -> None:
    # Port 1 on loopback refuses connections.
    settings = worker_settings("ws://127.0.0.1:1", max_connect_failures=3)
    async with running_worker(settings) as client:
        assert await within(client.wait()) == 1
    assert len(client.sessions) == 3
    assert all(not s.registered and "ConnectionRefused" in (s.error or "") for s in client.sessions)
    assert not client.connected.is_set()


def test_bad_settings_fail_early() -> None:
    with pytest.raises(ValueError, match="worker id"):
        worker_settings("ws://h:1", id="has spaces")
    with pytest.raises(ValueError, match="not both"):
        worker_settings("ws://h:1", upstream={"url": "http://x:1"})
    with pytest.raises(ValueError, match="ws"):
        WorkerClient(worker_settings("ftp://h:1"), GateHandler())


# ---- signals, in a child process (never signal the pytest process itself) ---------------

CHILD = """
import asyncio, logging, sys
from gatewaytui.workers import SimulateSettings, WorkerSettings, run_workers
logging.basicConfig(level=logging.INFO)
sim = SimulateSettings(latency_s=0, tokens_per_second=20, max_tokens=int(sys.argv[2]))
settings = WorkerSettings(gateway_url=sys.argv[1], id="sig", simulate=sim)
sys.exit(asyncio.run(run_workers(settings, install_signal_handlers=True)))
"""


@contextlib.asynccontextmanager
async def child_with_a_streaming_job(
    gw: FakeGateway, max_tokens: int
) -> AsyncIterator[tuple[asyncio.subprocess.Process, GatewayConn]]:
    """A `run_workers` child process with signal handlers, busy with one streaming job."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        gw.url,
        str(max_tokens),
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        conn = await within(gw.accept(), 20)
        await conn.status()
        await conn.job("j", {"messages": MESSAGES}, stream=True)
        assert isinstance(await conn.next(), ChunkFrame)  # the job is in flight
        yield child, conn
    finally:
        if child.returncode is None:
            child.kill()
            await child.communicate()


async def test_sigterm_drains_in_flight_jobs_then_exits_0() -> None:
    async with FakeGateway() as gw, child_with_a_streaming_job(gw, max_tokens=6) as (child, conn):
        child.send_signal(signal.SIGTERM)
        frames = []
        while not isinstance(frame := await conn.next(), ResultFrame):
            frames.append(frame)
        assert await conn.wait_closed() == (1000, "worker drained")
        _, stderr = await within(child.communicate())
        assert child.returncode == 0, stderr.decode()

    statuses = [f for f in frames if isinstance(f, StatusFrame)]
    assert [(s.ready, s.draining) for s in statuses] == [(False, True)]
    assert sum(f.tokens for f in frames if isinstance(f, ChunkFrame)) >= 5


async def test_a_second_signal_stops_at_once_with_130() -> None:
    async with (
        FakeGateway() as gw,
        child_with_a_streaming_job(gw, max_tokens=10_000) as (child, conn),
    ):
        child.send_signal(signal.SIGTERM)
        while not isinstance(await conn.next(), StatusFrame):
            pass  # chunks still flowing; the draining status report comes next
        child.send_signal(signal.SIGINT)
        assert await conn.wait_closed() == (1001, "worker stopping")
        _, stderr = await within(child.communicate())
        assert child.returncode == 130, stderr.decode()
        assert b"stopping now" in stderr
