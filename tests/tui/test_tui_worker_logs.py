"""`l`: a worker's own log lines, live, under Pilot against a real gateway and worker; the
GPU columns and rows; snapshots of the logs screen at both sizes."""

from __future__ import annotations

import logging

from rich.text import Text

from gatewaytui.schema.protocol import LogLine
from gatewaytui.tui.screens.worker_detail import WorkerDetailScreen
from gatewaytui.tui.screens.worker_logs import WorkerLogsScreen, log_line_text
from support.panel import SIZES, live_app, offline_app, screen_lines, table
from support.raw_worker import RawWorker
from support.waiting import until


def log_text(app) -> str:
    from textual.widgets import RichLog

    return "\n".join(line.text for line in app.screen.query_one(RichLog).lines)


async def test_l_follows_a_workers_own_log_lines(gateway, sim_workers, caplog):
    caplog.set_level(logging.INFO, logger="gatewaytui.workers")
    sim_workers(gateway, id="tail-me")
    app = live_app(gateway.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: table(app).total_count == 1, what="worker")
        await pilot.press("l")
        assert isinstance(app.screen, WorkerLogsScreen)
        await until(pilot, lambda: "registered with" in log_text(app), what="snapshot lines")
        assert "live" in screen_lines(app.screen.query_one("#logs-title"))[0]
        # A line logged now arrives while the screen is open (the gateway drains the worker).
        await app.session.drain_worker("tail-me")
        await until(pilot, lambda: "drained this worker" in log_text(app), what="new line")
        await pilot.press("escape")
        assert not isinstance(app.screen, WorkerLogsScreen)
        await until(
            pilot, lambda: gateway.sync(lambda: gateway.gateway.worker_logs.open_requests) == 0,
            what="the stream stopped on the worker",
        )  # fmt: skip


async def test_an_older_worker_says_it_has_no_logs(gateway):
    RawWorker(gateway.ws_url, "old", ["m"])
    app = live_app(gateway.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: table(app).total_count == 1, what="worker")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, WorkerDetailScreen), what="details")
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, WorkerLogsScreen), what="logs")
        await until(pilot, lambda: "does not support logs" in log_text(app), what="the refusal")
        assert "worker old does not support logs" in log_text(app)


async def test_an_offline_snapshot_has_no_process_to_ask():
    app = offline_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await pilot.press("l")
        await until(pilot, lambda: "offline snapshot" in log_text(app), what="note")


def test_a_log_line_is_text_not_markup():
    line = LogLine(ts=0, level="ERROR", logger="gatewaytui.workers.relay", message="[bold]x[/]")
    text = log_line_text(line)
    assert isinstance(text, Text) and text.plain.endswith("relay: [bold]x[/]")


async def test_gpu_columns_sort_by_gpu_memory_and_details_list_each_gpu():
    app = offline_app()
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.press("2")
        workers = table(app)
        workers.sort_by("gpu_mem", True)
        await pilot.pause()
        assert list(workers.visible_ids)[:3] == ["gpu-h100-01", "gpu-a100-01", "gpu-h100-02"]
        header = screen_lines(workers)[0]
        assert "GPU%" in header and "GPU MEM" in header
        assert workers.move_cursor_to("gpu-h100-01")
        await pilot.press("enter")
        await pilot.pause()
        body = "\n".join(screen_lines(app.screen.query_one("#detail-body")))
        assert "GPUs (2)" in body and "NVIDIA H100 80GB HBM3" in body and "655 W / 700" in body


def _logs_screen_snapshot(snap_compare, size):
    from gatewaytui.schema.api import WorkerLogs

    lines = [
        LogLine(ts=1763717399 + i, level=level, logger="gatewaytui.workers.client", message=msg)
        for i, (level, msg) in enumerate(
            [
                ("INFO", "worker gpu-h100-02: registered with ws://gw:8080/api/workers/connect"),
                ("WARNING", "upstream http://10.0.3.7:8000 unreachable: connection refused"),
                ("INFO", "worker gpu-h100-02: job chat-1 failed: upstream error 502"),
            ]
        )
    ]

    async def run_before(pilot) -> None:
        app = pilot.app
        await pilot.press("2")
        screen = WorkerLogsScreen("gpu-h100-02")
        screen._follow = lambda: None  # no gateway: draw given lines
        await app.push_screen(screen)
        screen.state = "live"
        screen._show(screen.query_one("RichLog"), WorkerLogs(lines=lines, dropped=2))
        screen._title()
        await pilot.pause()

    from support.panel import snapshot_app

    assert snap_compare(snapshot_app(), terminal_size=size, run_before=run_before)


def test_logs_screen_wide(snap_compare):
    _logs_screen_snapshot(snap_compare, SIZES["wide"])


def test_logs_screen_narrow(snap_compare):
    _logs_screen_snapshot(snap_compare, SIZES["narrow"])
