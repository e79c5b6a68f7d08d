"""The History and Usage views: on a live gateway with a ledger (Pilot), and over a snapshot,
which shows the history it was saved with (SVG snapshots at 120x40 and 80x24)."""

from __future__ import annotations

import json

import openai
import pytest

from gatewaytui.tui.app import GatewayApp
from gatewaytui.tui.config import TuiConfig
from gatewaytui.tui.screens.history_detail import HistoryJobScreen
from gatewaytui.tui.views.usage import sparkline
from support.panel import (
    SIZES,
    header_text,
    live_app,
    screen_lines,
    snapshot_app,
    still,
    table,
)
from support.paths import SAMPLE
from support.raw_worker import RawWorker
from support.waiting import until

MESSAGES = [{"role": "user", "content": "hello"}]


def rows(app) -> dict:
    """The rows the current view's table shows (after its filter)."""
    shown = table(app)
    return {row_id: shown.get_row(row_id) for row_id in shown.visible_ids}


def _traffic(gw) -> None:
    good = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-search", max_retries=0)
    other = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-chat", max_retries=0)
    for _ in range(3):
        good.chat.completions.create(model="m-ok", messages=MESSAGES)
    other.chat.completions.create(model="m-ok", messages=MESSAGES)
    with pytest.raises(openai.APIStatusError):
        other.chat.completions.create(model="m-bad", messages=MESSAGES)
    assert gw.gateway.history.ledger.flush(10)


@pytest.fixture
def busy_gateway(make_gateway, sim_workers, tmp_path):
    gw = make_gateway(
        history__path=str(tmp_path / "h.sqlite3"),
        server__api_keys="team-search=sk-search,team-chat=sk-chat",
    )
    sim_workers(gw, id="w-ok", simulate={"models": ["m-ok"], "max_tokens": 4})
    sim_workers(gw, id="w-bad", simulate={"models": ["m-bad"], "failure_rate": 1.0})
    _traffic(gw)
    return gw


async def test_history_lists_ended_jobs_filters_and_opens_how_one_ended(busy_gateway):
    app = live_app(busy_gateway.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("8")
        await until(pilot, lambda: table(app).total_count == 5, what="five ended jobs")
        assert "the last 5 ended jobs from the gateway's ledger" in header_text(app)
        shown = rows(app)
        outcomes = sorted(r["outcome"] for r in shown.values())
        assert outcomes == ["ok", "ok", "ok", "ok", "upstream_error"]
        assert {r["key"] for r in shown.values()} == {"team-search", "team-chat"}
        await pilot.press("slash", *"m-bad", "enter")
        await until(pilot, lambda: table(app).visible_count == 1, what="filtered")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, HistoryJobScreen), what="details")
        body = "\n".join(screen_lines(app.screen.query_one("#event-body")))
        assert "ended upstream_error (HTTP 500) after" in body
        assert "simulated failure" in body and "team-chat" in body and "w-bad" in body
        await pilot.press("escape")
        assert not isinstance(app.screen, HistoryJobScreen)


async def test_usage_groups_cycles_the_window_and_draws_sparklines(busy_gateway):
    app = live_app(busy_gateway.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("9")
        await until(pilot, lambda: table(app).total_count == 2, what="two models")
        shown = rows(app)
        assert shown["m-ok"]["requests"] == 4 and shown["m-ok"]["errors"] == 0
        assert shown["m-bad"]["error_rate"] == 1.0
        assert "by model over 1h" in header_text(app)
        # The ledger is seconds old: REQ/S is over its age, and the header says so.
        assert "rates over the last" in header_text(app) and "(the ledger's age)" in header_text(
            app
        )
        assert float(shown["m-ok"]["request_rate"]) > 4 / 120
        spark = "\n".join(screen_lines(app.screen.query_one("#usage-spark")))
        assert "requests/minute" in spark and "errors/minute" in spark
        await pilot.press("b")
        await until(pilot, lambda: "team-search" in rows(app), what="by key")
        assert rows(app)["team-search"]["requests"] == 3
        assert "by key over 1h" in header_text(app)
        for window in ("24h", "7d", "15m"):
            await pilot.press("w")
            await until(pilot, lambda w=window: f"over {w}" in header_text(app), what=window)
        await until(pilot, lambda: "team-chat" in rows(app), what="15m rows")
        spark = "\n".join(screen_lines(app.screen.query_one("#usage-spark")))
        assert "requests/minute" in spark and spark.splitlines()[0].endswith(" 5 in 15m")


async def test_history_off_on_the_gateway_says_so(make_gateway):
    gw = make_gateway(history__enabled="false")
    app = live_app(gw.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("8")
        await until(pilot, lambda: "history.enabled=false" in header_text(app), what="note")


async def test_a_snapshot_shows_the_history_it_was_saved_with():
    """sample_state.json carries an hour of ended jobs and its usage: both views show them
    and say they come from the snapshot, and `b` regroups the saved usage."""
    app = snapshot_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("8")
        await until(pilot, lambda: table(app).total_count == 36, what="the saved jobs")
        saved = "saved in the snapshot at 2026-11-21 09:30 UTC"
        assert f"the last 36 ended jobs {saved}" in header_text(app)
        assert "upstream_error" in "\n".join(screen_lines(table(app)))
        await pilot.press("9")
        await until(pilot, lambda: table(app).total_count == 4, what="usage by model")
        assert "by model over 1h" in header_text(app) and saved in header_text(app)
        await pilot.press("b")
        keys = {"web-app", "batch-eval", "notebook", "(none)"}
        await until(pilot, lambda: set(rows(app)) == keys, what="usage by key")
        assert "(no key)" in "\n".join(screen_lines(table(app)))  # says what it lacks
        await pilot.press("w")  # the snapshot holds one window: it stays
        await pilot.pause()
        assert "by key over 1h" in header_text(app)


async def test_a_snapshot_without_history_says_so(tmp_path):
    bare = json.loads(SAMPLE.read_text(encoding="utf-8"))
    del bare["history"]
    path = tmp_path / "bare.json"
    path.write_text(json.dumps(bare), encoding="utf-8")
    app = GatewayApp(TuiConfig(), snapshot=path, read_only=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("8")
        await until(pilot, lambda: "this snapshot holds no history" in header_text(app))
        await pilot.press("9")
        await until(pilot, lambda: "this snapshot holds no usage history" in header_text(app))


async def test_a_snapshot_saved_from_a_live_gateway_carries_its_history(busy_gateway, tmp_path):
    """`S` on a live gateway reads the recent history first and saves it with the state;
    the file opened offline shows the same ended jobs and usage."""
    app = live_app(busy_gateway.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: "● live" in header_text(app), what="live")
        app.actions.save_snapshot(tmp_path)
        await until(pilot, lambda: list(tmp_path.glob("gatewaytui-*.json")), what="the file")
    (path,) = tmp_path.glob("gatewaytui-*.json")
    history = json.loads(path.read_text(encoding="utf-8"))["history"]
    assert len(history["jobs"]) == 5 and history["window"] == "1h"
    assert {u["group_by"] for u in history["usage"]} == {"model", "key", "worker", "backend"}
    by_key = next(u for u in history["usage"] if u["group_by"] == "key")
    assert {r["group"]: r["requests"] for r in by_key["rows"]} == {"team-search": 3, "team-chat": 2}
    assert "sk-search" not in path.read_text(encoding="utf-8")  # names, never keys
    reopened = GatewayApp(TuiConfig(), snapshot=path, read_only=True)
    async with reopened.run_test(size=(120, 40)) as pilot:
        await pilot.press("8")
        await until(pilot, lambda: table(reopened).total_count == 5, what="the saved jobs")
        assert "m-bad" in "\n".join(screen_lines(table(reopened)))


def test_sparkline_scales_to_the_maximum():
    assert sparkline([0, 1, 2, 4], 10) == "▁▃▅█"
    assert sparkline([0, 0], 10) == "▁▁" and sparkline([5] * 20, 4) == "████"


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
@pytest.mark.parametrize("key", ["8", "9"], ids=["history", "usage"])
def test_history_views_over_a_snapshot(snap_compare, key, size):
    assert snap_compare(snapshot_app(), press=(key,), terminal_size=size, run_before=still)


async def test_job_details_of_an_ended_job_say_how_it_ended(make_gateway, tmp_path):
    import asyncio
    import threading

    gw = make_gateway(history__path=str(tmp_path / "h.sqlite3"), history__flush_interval="50ms")
    worker = RawWorker(gw.ws_url, "slow", ["m"])  # holds the job until the test answers it
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    request = threading.Thread(
        target=lambda: client.chat.completions.create(model="m", messages=MESSAGES)
    )
    app = live_app(gw.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3")
        request.start()
        await until(pilot, lambda: table(app).total_count == 1, what="the job in flight")
        await pilot.press("enter")
        worker.reply_chat(await asyncio.to_thread(worker.next_job))
        body = app.screen.query_one("#job-body")
        await until(
            pilot,
            lambda: "ended ok after" in "\n".join(screen_lines(body)),
            timeout=20,
            what="how the job ended",
        )
    request.join(10)


async def test_the_overview_starts_from_the_ledger_not_from_zero(busy_gateway):
    from gatewaytui.tui.views.overview import OverviewView

    app = live_app(busy_gateway.url)
    async with app.run_test(size=(120, 40)) as pilot:
        overview = app.query_one(OverviewView)
        # the five requests ended before the panel opened: only the ledger knows of them
        await until(pilot, lambda: any(overview.throughput.requests), what="seeded rates")
        # each second of a minute gets that minute's average: the seconds of the current
        # minute so far carry part of its five requests, never more than all five
        assert 0 < sum(overview.throughput.requests) <= 5.0001


def test_seeded_rates_divide_by_the_part_of_a_minute_the_ledger_saw():
    from gatewaytui.tui.views.overview import Throughput

    minute = 6000.0
    throughput = Throughput()
    # 10 requests in the 20 s between the ledger's start (minute + 10) and now (+30).
    throughput.seed([(minute, 10.0, 40.0)], now=minute + 30, since=minute + 10)
    rates = [r for r in throughput.requests if r]
    assert rates and all(r == 0.5 for r in rates) and sum(rates) == 10
    assert throughput.tokens[-1] == 2.0
    # Before the ledger started: nothing recorded, so no rate.
    assert throughput.requests[-21] == 0.0
    # A ledger started mid-second in a minute now past: its seconds never add up to more
    # than the minute's count.
    for offset in (10.5, 10.25, 58.5):
        later = Throughput()
        later.seed([(minute, 5.0, 0.0)], now=minute + 90.7, since=minute + offset)
        assert 0 < sum(later.requests) <= 5.0 + 1e-9


def test_a_partial_fleet_answer_is_said_in_the_header():
    from gatewaytui.schema.history import HistoryJobsPage
    from gatewaytui.tui.views.history import coverage_text

    assert coverage_text(HistoryJobsPage()) is None  # a single node
    assert coverage_text(HistoryJobsPage(replicas=["r1", "r2", "r3"])).plain == "3 replicas ·"
    partial = HistoryJobsPage(replicas=["r1", "r3"], partial=True, missing_replicas=["r2"])
    note = coverage_text(partial)
    assert note.plain == "partial: no answer from replica r2 ·" and "yellow" in str(note.style)


async def test_both_views_with_data_at_the_smallest_size(busy_gateway):
    """80x24 with a live ledger: the columns that matter stay, the rest give way."""
    app = live_app(busy_gateway.url)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("8")
        await until(pilot, lambda: table(app).total_count == 5, what="five ended jobs")
        lines = "\n".join(screen_lines(table(app)))
        for column in ("ENDED", "OUTCOME", "MODEL", "TIME"):
            assert column in lines
        assert "upstream_error" in lines and "m-bad" in lines
        await pilot.press("9")
        await until(pilot, lambda: table(app).total_count == 2, what="two models")
        lines = "\n".join(screen_lines(table(app)))
        for column in ("GROUP", "REQ/S", "ERR%", "P50", "P95"):
            assert column in lines
        assert "100.0%" in lines  # m-bad's error rate
        spark = "\n".join(screen_lines(app.screen.query_one("#usage-spark")))
        assert "requests/minute" in spark
