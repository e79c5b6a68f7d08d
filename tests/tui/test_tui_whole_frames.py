"""One state of the store per frame: the header's counts and the rows on screen always come
from the same state, whatever draws them (a paced update, a view shown, a connection change).

The panel here follows a scripted stream server (a real WebSocket on loopback speaking the
`WS /api/state/stream` protocol) and draws only when the test says so: its paced loop sleeps
100 s after its first update and its 1 Hz tick is held, so "the store is ahead of the screen"
(the connection applied a message between two paced updates) is a state the test sets up,
not a race it hopes to hit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from gatewaytui.tui.app import GatewayApp
from gatewaytui.tui.config import ContextConfig, TuiConfig
from support.frames import FrameLog, assert_whole
from support.panel import FAST, header_text, table
from support.waiting import until


class StreamServer:
    """A gateway's state stream and nothing else: each connection gets the messages the test
    `send`s (in order); `drop()` closes the current connection."""

    def __init__(self) -> None:
        self.url = ""
        self.connections = 0
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()

    def send(self, message: dict[str, Any]) -> None:
        self._outbox.put_nowait(json.dumps(message))

    def drop(self) -> None:
        self._outbox.put_nowait(None)

    async def _handle(self, ws: ServerConnection) -> None:
        """Until `drop()` or the panel goes away (a handler left waiting would hold the
        server's shutdown for ever)."""
        self.connections += 1
        closed = asyncio.ensure_future(ws.wait_closed())
        try:
            while True:
                message = asyncio.ensure_future(self._outbox.get())
                await asyncio.wait({message, closed}, return_when=asyncio.FIRST_COMPLETED)
                if not message.done():
                    message.cancel()
                    return
                if message.result() is None:
                    await ws.close()
                    return
                await ws.send(message.result())
        finally:
            closed.cancel()


@asynccontextmanager
async def stream_server() -> AsyncIterator[StreamServer]:
    server = StreamServer()
    async with serve(server._handle, "127.0.0.1", 0) as running:
        server.url = f"http://127.0.0.1:{running.sockets[0].getsockname()[1]}"
        yield server


def snapshot(workers: list[str], seq: int) -> dict[str, Any]:
    state = {
        "schema_version": 1,
        "generated_at": "2026-11-21T09:30:00.000Z",
        "seq": seq,
        "server": {"version": "t", "status": "ready", "started_at": "2026-11-21T09:00:00.000Z"},
        "workers": [{"id": w, "name": w, "status": "idle"} for w in workers],
    }
    return {"type": "snapshot", "seq": seq, "state": state}


def added(seq: int, worker_id: str) -> dict[str, Any]:
    worker = {"id": worker_id, "name": worker_id, "status": "idle"}
    return {
        "type": "delta",
        "seq": seq,
        "ts": "2026-11-21T09:30:01.000Z",
        "upsert": {"workers": [worker]},
    }


def held_panel(url: str) -> GatewayApp:
    """The panel on `url`, drawing only when the test calls `app.feed.catch_up()` (what its
    paced loop or its tick would do next) or presses a key."""
    context = ContextConfig(name="lab", url=url)
    config = TuiConfig(contexts=[context], default_context="lab", refresh_rate=0.01)
    app = GatewayApp(config, context=context, connection_options=FAST)
    app.feed.tick = lambda: None  # type: ignore[method-assign]  # bound by on_mount
    return app


async def started(pilot: Any, server: StreamServer) -> None:
    """The paced loop drew its first update (and now sleeps) and the stream is open."""
    app = pilot.app
    await until(pilot, lambda: "◌ stopped" not in header_text(app), what="the first update")
    await until(pilot, lambda: server.connections == 1, what="the stream")


def counts(app: GatewayApp) -> str:
    return header_text(app).split(" · workers ")[1].split(" ·")[0]


@asynccontextmanager
async def held_session(workers: list[str]) -> AsyncIterator[tuple[Any, Any, Any, FrameLog]]:
    """A held panel on a scripted stream server, its frames logged, a first snapshot with
    `workers` drawn."""
    async with stream_server() as server:
        app = held_panel(server.url)
        async with app.run_test(size=(120, 40)) as pilot:
            log = FrameLog(app)
            await started(pilot, server)
            server.send(snapshot(workers, 1))
            await until(pilot, lambda: app.store.seq == 1, what="the snapshot in the store")
            app.feed.catch_up()
            yield server, app, pilot, log


async def test_a_view_shown_between_two_updates_is_counted_in_the_same_frame():
    # a paced update draws it (on Overview: the Workers view goes stale)
    async with held_session([]) as (server, app, pilot, log):
        assert counts(app) == "0/0" and "● live" in header_text(app)

        server.send(added(2, "w1"))
        await until(pilot, lambda: "w1" in app.store.workers, what="the delta in the store")
        assert counts(app) == "0/0"  # the store is ahead of the screen until the next update

        await pilot.press("2")  # Workers, redrawn from the store as it is now
        assert table(app).visible_ids == ("w1",)
        assert counts(app) == "1/1", header_text(app)  # not "0/0" over a row
        await pilot.pause()
        assert_whole(log)


async def test_a_reconnect_while_paused_does_not_count_the_held_snapshot():
    async with held_session(["w1", "w2"]) as (server, app, pilot, log):
        await pilot.press("2")
        assert set(table(app).visible_ids) == {"w1", "w2"} and counts(app) == "2/2"

        await pilot.press("p")
        server.drop()  # the gateway restarts: the new one has one worker
        server.send(snapshot(["w3"], 1))
        await until(pilot, lambda: list(app.store.workers) == ["w3"], what="the new snapshot")
        app.feed.catch_up()  # the feed hears the connection change; paused, it draws nothing
        assert app.session.state.live and "● live" in header_text(app)
        assert set(table(app).visible_ids) == {"w1", "w2"}  # held back while paused
        assert counts(app) == "2/2", header_text(app)  # the rows' state, not the store's

        await pilot.press("p")  # resumed: the new state, rows and counts together
        assert table(app).visible_ids == ("w3",) and counts(app) == "1/1"
        await pilot.pause()
        assert_whole(log)


async def test_views_shown_while_paused_keep_the_held_picture():
    async with held_session(["w1"]) as (server, app, pilot, log):
        await pilot.press("2", "p")
        server.send(added(2, "w2"))
        await until(pilot, lambda: "w2" in app.store.workers, what="the delta in the store")
        await pilot.press("1", "2")  # Workers missed nothing the screen drew: not redrawn
        assert table(app).visible_ids == ("w1",) and counts(app) == "1/1", header_text(app)
        await pilot.press("p")
        assert set(table(app).visible_ids) == {"w1", "w2"} and counts(app) == "2/2"
        await pilot.pause()
        assert_whole(log)
