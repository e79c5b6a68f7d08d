"""The screen does not jump: at 80x24 the header keeps one height whatever it holds (large
counts, long names, a fleet's degraded state, a reconnect with the data's age), and the
Events view, following the newest, still shows it at the bottom after the terminal is resized.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.text import Text

from gatewaytui.client.connection import ConnectionStatus
from gatewaytui.tui.app import GatewayApp
from gatewaytui.tui.config import TuiConfig
from gatewaytui.tui.widgets.header import (
    ConnectionLine,
    Counts,
    GatewayHeader,
    HeaderState,
    Place,
)
from support.fleet_state import fleet_app
from support.panel import offline_app, screen_lines, table
from support.paths import SAMPLE
from support.waiting import until

SMALL = HeaderState(
    badge="lab",
    place=Place("lab", "Overview"),
    connection=ConnectionLine(ConnectionStatus.LIVE),
    counts=Counts(1, 2, 0, 0, 8, "0.1.0"),
    server_status=Text("● ready"),
)
BIG = HeaderState(
    badge="production-eu-west-1-primary-gateway",
    place=Place(
        "production-eu-west-1-primary-gateway",
        "Workers",
        filter_text="gpu-a100-(1|2|3)",
        rows=(12_345, 12_345),
        marked=1_024,
        drains=tuple((f"gpu-a100-node-{n:04d}", "drain", 64) for n in range(12)),
    ),
    connection=ConnectionLine(ConnectionStatus.RECONNECTING, retry_in=9.0, data_age=3_725.0),
    counts=Counts(
        12_345, 12_345, 99_999, 10_000, 10_000, "10.20.30-rc.4", Text("replicas 12/12 · ")
    ),
    read_only=True,
    paused=True,
    server_status=Text("? unknown"),
)


async def test_the_80x24_header_keeps_one_height_whatever_it_holds():
    app = offline_app()
    async with app.run_test(size=(80, 24)) as pilot:
        header = app.query_one(GatewayHeader)
        app.feed.tick = lambda: None  # type: ignore[method-assign]  # nothing redraws it
        heights = []
        for state in (SMALL, BIG, SMALL):
            header.state = state
            await pilot.pause()
            heights.append(header.size.height)
            assert all(len(line) <= 80 for line in screen_lines(header))
        assert heights == [3, 3, 3]


async def test_the_80x24_header_height_is_the_same_in_a_degraded_fleet(tmp_path):
    heights = []
    for app in (offline_app(), fleet_app(tmp_path, degraded=True)):
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            heights.append(app.query_one(GatewayHeader).size.height)
    assert heights == [3, 3]


def many_events(directory: Path, n: int = 300) -> Path:
    state = json.loads(SAMPLE.read_text(encoding="utf-8"))
    first = state["events"][-1]
    state["events"] += [
        {**first, "id": first["id"] + i, "message": f"event number {i}"} for i in range(1, n + 1)
    ]
    path = directory / "events.json"
    path.write_text(json.dumps(state), encoding="utf-8")
    return path


async def test_events_stay_at_the_bottom_while_following_after_a_resize(tmp_path):
    app = GatewayApp(TuiConfig(), snapshot=many_events(tmp_path), read_only=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        events = table(app)
        newest = events.visible_ids[-1]

        def newest_on_screen() -> bool:
            lines = [line for line in screen_lines(events) if line.strip()]
            return bool(lines) and "event number 300" in lines[-1]

        await until(pilot, newest_on_screen, 5, "the newest event at the bottom")
        for size in ((80, 24), (200, 60), (100, 30), (120, 40)):
            await pilot.resize_terminal(*size)
            await until(pilot, newest_on_screen, 5, f"the newest event at the bottom at {size}")
            assert events.cursor_id == newest
