"""What the view tables show and how they move: heartbeat ages, status colours from the
theme, the events view's follow mode, and the filter (typed in a burst, bad regexes)."""

from __future__ import annotations

from gatewaytui.tui.app import GatewayApp
from gatewaytui.tui.config import TuiConfig
from support.panel import (
    beat,
    header_text,
    live_app,
    offline_app,
    screen_lines,
    settle,
    table,
)
from support.paths import SAMPLE
from support.raw_worker import RawWorker
from support.waiting import until


async def test_heartbeat_age_ticks_and_turns_red_when_stale(make_gateway):
    gw = make_gateway(workers__heartbeat_interval=1, workers__heartbeat_expiry=60)
    worker = RawWorker(gw.ws_url, "w", ["m"])
    app = live_app(gw.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: table(app).total_count == 1, what="worker")
        await until(pilot, lambda: app.heartbeat_stale_after == 2.0, what="plugin options")
        worker.heartbeat()
        await until(pilot, lambda: beat(app, "w").plain == "0s", what="a fresh heartbeat")
        assert beat(app, "w").style == ""  # fresh: plain
        # whole seconds, moved only by the 1 Hz tick: redraws in between show the same age
        clock = app.clock()
        assert clock == int(clock) and app.clock() == clock
        await until(pilot, lambda: app.clock() > clock, what="a tick")
        await until(pilot, lambda: beat(app, "w").plain == "3s", timeout=20, what="3s old")
        cell = beat(app, "w")
        assert cell.style == "bold red"  # stale: older than twice the heartbeat interval
        assert any(line.rstrip().endswith("3s") for line in screen_lines(table(app)))
        worker.heartbeat()
        await until(pilot, lambda: beat(app, "w").plain in ("0s", "1s"), what="fresh again")
        assert beat(app, "w").style == ""


async def test_status_words_take_the_themes_colours_and_follow_a_theme_switch():
    """The ANSI theme's statuses are the terminal's own colours (SGR 95, not a 256-colour
    approximation), from the first frame on and after switching themes."""

    sample = SAMPLE
    app = GatewayApp(TuiConfig(), snapshot=sample, theme="gatewaytui-ansi")

    def working_color() -> str:
        strip = table(app).render_line(2)
        segment = next(s for s in strip if "working" in s.text)
        return segment.style.color.name

    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        assert working_color() == "color(13)"  # ansi_bright_magenta (4.5:1 on black; blue was not)
        app.theme = "gatewaytui-dark"
        await settle(pilot)
        assert working_color().startswith("#")


async def test_events_follow_stops_when_the_cursor_moves_up_and_f_resumes(gateway):
    RawWorker(gateway.ws_url, "w1", ["m"])
    RawWorker(gateway.ws_url, "w2", ["m"])
    app = live_app(gateway.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        events = table(app)
        await until(pilot, lambda: events.total_count >= 2, what="events")
        assert events.cursor_id == events.visible_ids[-1]  # following the newest
        assert "following the newest" in header_text(app)
        RawWorker(gateway.ws_url, "w3", ["m"])
        await until(pilot, lambda: any("w3" in r for r in _messages(events)), what="w3 event")
        assert events.cursor_id == events.visible_ids[-1]  # followed
        await pilot.press("up")
        await pilot.pause()
        held = events.cursor_id
        assert not app.current_view.follow and "follow off (f)" in header_text(app)
        RawWorker(gateway.ws_url, "w4", ["m"])
        await until(pilot, lambda: any("w4" in r for r in _messages(events)), what="w4 event")
        assert events.cursor_id == held != events.visible_ids[-1]  # not yanked away
        await pilot.press("f")
        assert app.current_view.follow and events.cursor_id == events.visible_ids[-1]
        RawWorker(gateway.ws_url, "w5", ["m"])
        await until(pilot, lambda: any("w5" in r for r in _messages(events)), what="w5 event")
        assert events.cursor_id == events.visible_ids[-1]


def _messages(events_table) -> list[str]:
    return [str(events_table.get_row(i).get("message", "")) for i in events_table.visible_ids]


async def test_events_filter_keeps_matching_events_as_they_arrive(gateway):
    RawWorker(gateway.ws_url, "alpha", ["m"])
    RawWorker(gateway.ws_url, "beta", ["m"])
    app = live_app(gateway.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        events = table(app)
        await until(pilot, lambda: events.total_count >= 2, what="events")
        await pilot.press("slash", *"alpha", "enter")
        assert events.visible_count >= 1
        assert all("alpha" in m for m in _messages(events))
        assert "filter /alpha/" in header_text(app)
        total = events.total_count
        RawWorker(gateway.ws_url, "gamma", ["m"])
        await until(pilot, lambda: events.total_count > total, what="gamma event")
        assert all("alpha" in m for m in _messages(events))  # gamma's is filtered out
        shown = events.visible_count
        RawWorker(gateway.ws_url, "alpha-2", ["m"])
        await until(pilot, lambda: events.visible_count > shown, what="a matching event")
        assert events.cursor_id == events.visible_ids[-1]  # follow works within the filter
        await pilot.press("escape")
        assert events.visible_count == events.total_count


async def test_keys_typed_in_one_burst_after_slash_go_to_the_filter_not_to_actions():
    """Over SSH keys arrive in batches: `/ready` must filter, never drain (`d`) and confirm
    (`y`) — the filter box takes the keys that follow `/` at once, not a frame later."""
    from textual import events

    from gatewaytui.tui.screens.confirm import ConfirmScreen

    app = offline_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        app.post_message(events.Key("slash", "/"))  # all queued before any is handled
        for key in "ready":
            app.post_message(events.Key(key, key))
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmScreen)
        assert app._filter_input.value == "ready"
        assert app.current_view.filter_text == "ready"
        await pilot.press("slash", "x")  # in the box, `/` is a character of the regex
        assert app._filter_input.value == "ready/x"


async def test_a_filter_that_is_not_a_regex_says_why():
    app = offline_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2", "slash", "left_square_bracket")
        await settle(pilot)
        assert "✖ bad regex: unterminated character set" in header_text(app)
        assert app.current_view.filter_text == ""  # the rows stay as they were
        await pilot.press("enter")
        await settle(pilot)
        assert any("the filter is unchanged" in str(n.message) for n in app._notifications)
        assert "bad regex" not in header_text(app)
