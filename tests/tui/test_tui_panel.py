"""The panel's rough edges, driven with Pilot: notifications that carry gateway text, context
colours, broken token files, the palette's binding id and the keymap, the footer and header
at 80 columns, the job detail screen, heartbeat ages, context switches, follow mode."""

from __future__ import annotations

import pytest
from test_tui_app import FAST, SAMPLE, header_text, live_app, offline_app, table, until
from textual.widgets._toast import Toast

from gatewaytui.client.errors import ActionError
from gatewaytui.tui.app import GatewayApp
from gatewaytui.tui.config import ConfigError, ContextConfig, TuiConfig
from gatewaytui.tui.widgets.header import GatewayHeader
from support.raw_worker import RawWorker


def toast_texts(app: GatewayApp) -> list[str]:
    return [str(toast.render()) for toast in app.screen.query(Toast)]


# ---- 1. notifications are never markup ------------------------------------------------------


async def test_a_refused_drain_shows_the_reason_literally(gateway, monkeypatch):
    RawWorker(gateway.ws_url, "w", ["m"])
    reason = "worker 'w' refused: GET [/x] failed; [@click=app.quit]press[/] [bold]"

    async def refuse(worker_id: str):
        raise ActionError(409, reason)

    app = live_app(gateway.url)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: table(app).total_count == 1, what="worker")
        monkeypatch.setattr(app.session, "drain_worker", refuse)
        await pilot.press("d", "y")
        await until(pilot, lambda: any("refused" in t for t in toast_texts(app)), what="toast")
        await pilot.pause()
        (shown,) = [t for t in toast_texts(app) if "refused" in t]
        assert "[/x]" in shown and "[@click=app.quit]press[/]" in shown and "[bold]" in shown
        await pilot.click(Toast)  # a click on it dismisses it; it is not a link to app.quit
        await pilot.pause()
        assert app.is_running
        assert "w" in header_text(app)


# ---- 2. every colour the config accepts draws the header badge -------------------------------

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing answers


@pytest.mark.parametrize(
    ("color", "expected"),
    [
        ("ansi_red", "color(1)"),
        ("ansi_bright_red", "color(9)"),
        ("hsl(0, 100%, 50%)", "#ff0000"),
        ("rgb(1, 2, 3)", "rgb(1, 2, 3)"),  # Rich reads it as it is (#010203)
        ("red", "red"),  # a plain name stays the terminal's own red
        ("#d7005f", "#d7005f"),
        ("crimson", "#dc143c"),
    ],
)
async def test_context_colour_forms_draw_the_badge(color, expected):
    context = ContextConfig(name="prod", url=UNREACHABLE, color=color, label="PRODUCTION")
    app = GatewayApp(TuiConfig(contexts=[context]), context=context, connection_options=FAST)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        header = app.query_one(GatewayHeader)
        badge = next(span for span in header._spans if span.start == 0)
        assert header._plain.startswith(" PRODUCTION ")
        assert badge.style.reverse and badge.style.bold
        assert badge.style.color.name == expected


# ---- 3. a context whose token file is missing or empty --------------------------------------


async def choose_from_palette(pilot, text: str) -> None:
    """ctrl+p, type `text`, take the first hit."""
    from textual.command import CommandPalette

    await pilot.press("ctrl+p")
    await until(pilot, lambda: isinstance(pilot.app.screen, CommandPalette), what="palette")
    await pilot.press(*text)
    await pilot.pause(0.3)  # the palette searches in a worker of its own
    await pilot.press("enter")
    await until(pilot, lambda: not isinstance(pilot.app.screen, CommandPalette), what="closed")


async def test_switching_to_a_context_with_a_missing_token_file_stays_put(tmp_path):
    local = ContextConfig(name="local", url=UNREACHABLE)
    broken = ContextConfig(name="broken", url=UNREACHABLE, token_file=tmp_path / "nope.token")
    config = TuiConfig(contexts=[local, broken])
    app = GatewayApp(config, context=local, connection_options=FAST)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        session = app.session
        await choose_from_palette(pilot, "Context: broken")
        await until(pilot, lambda: bool(app._notifications), what="notification")
        (note,) = app._notifications
        assert note.severity == "error" and "cannot switch to broken" in note.title
        assert "token file not found" in note.message and "nope.token" in note.message
        assert "Still on context 'local'" in note.message
        assert app.is_running and app.session is session and app.context is local
        assert app.context_name == "local" and " local " in header_text(app)


def test_starting_on_a_context_with_a_broken_token_file_is_a_config_error(tmp_path):
    missing = ContextConfig(name="prod", url=UNREACHABLE, token_file=tmp_path / "prod.token")
    with pytest.raises(ConfigError, match=r"context 'prod': token file not found: .*prod\.token"):
        GatewayApp(TuiConfig(contexts=[missing]), context=missing)
    (tmp_path / "prod.token").write_text("  \n")
    with pytest.raises(ConfigError, match=r"context 'prod': token file is empty: .*prod\.token"):
        GatewayApp(TuiConfig(contexts=[missing]), context=missing)


# ---- 8. the keymap remaps keys in the running app, the palette's too -----------------------


async def test_keymap_from_the_config_remaps_keys_in_the_running_app():
    from textual.command import CommandPalette

    from gatewaytui.tui.screens.help import HelpScreen

    config = TuiConfig(
        keymap={"app.help": "f1", "app.command_palette": "ctrl+k", "app.view_2": "w"}
    )
    app = GatewayApp(config, snapshot=SAMPLE, read_only=True)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        assert not app._notifications  # every id is known: no "no binding has the id" warning
        await pilot.press("w")
        assert app.current_view.view_id == "workers"
        await pilot.press("question_mark")  # the old key does nothing now
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        rows = {binding_id: key for key, _, binding_id in app.screen.rows()}
        assert rows["app.command_palette"] == "ctrl+k" and rows["app.help"] == "f1"
        assert rows["app.quit"] == "q"  # not remapped
        await pilot.press("escape")
        await pilot.press("ctrl+p")
        await pilot.pause()
        assert not isinstance(app.screen, CommandPalette)
        await pilot.press("ctrl+k")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette), what="palette")


# ---- 6. the footer: only keys that do something, help and quit at any width ----------------


def footer_keys(app: GatewayApp) -> list[str]:
    from textual.widgets._footer import FooterKey

    return [key.description for key in app.screen.query(FooterKey)]


async def settle(pilot) -> None:
    """The footer recomposes after the bindings change (after a refresh)."""
    for _ in range(3):
        await pilot.pause()


# Offline (read-only): Backends opens nothing, since enter there edits.
OPENS = {"1": False, "2": True, "3": True, "4": True, "5": False, "6": False, "7": False}


@pytest.mark.parametrize("view_key", list(OPENS))
async def test_footer_shows_mark_and_open_only_where_they_work(view_key):
    app = offline_app()
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.press(view_key)
        await settle(pilot)
        keys = footer_keys(app)
        assert ("Mark" in keys) is (view_key == "2")  # only Workers acts on marked rows
        assert ("Open" in keys) is OPENS[view_key]
        assert "Help" in keys and "Quit" in keys
        table_widget = app._current_table()
        if table_widget is not None and view_key != "2":
            before = table_widget.marked
            await pilot.press("space")
            assert table_widget.marked == before  # space marks nothing there


@pytest.mark.parametrize("view_key", list(OPENS))
async def test_help_and_quit_survive_at_80_columns(view_key):
    app = offline_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press(view_key)
        await settle(pilot)
        keys = footer_keys(app)
        assert keys[-2:] == ["Help", "Quit"] or {"Help", "Quit"} <= set(keys)
        footer = app.screen.query_one("GatewayFooter")
        right = max(key.region.right for key in footer.query("FooterKey"))
        assert right <= 80
        for key in footer.query("FooterKey"):
            if key.description in ("Help", "Quit"):
                assert key.region.right <= 80 - 12  # clear of the palette key on the right


async def test_footer_keys_come_back_when_the_terminal_widens():
    app = offline_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        assert "Reverse" not in footer_keys(app)
        await pilot.resize_terminal(160, 40)
        await settle(pilot)
        assert "Reverse" in footer_keys(app) and "Help" in footer_keys(app)


# ---- 4. the job detail screen ------------------------------------------------------------


def screen_lines(widget) -> list[str]:
    return [widget.render_line(y).text.rstrip() for y in range(widget.size.height)]


async def test_enter_on_a_job_shows_all_of_it():
    from gatewaytui.tui.screens.job_detail import JobDetailScreen

    app = offline_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3")
        assert table(app).move_cursor_to("emb-018215-7c41e2")
        await pilot.press("enter")
        assert isinstance(app.screen, JobDetailScreen)
        await pilot.pause()
        text = "\n".join(screen_lines(app.screen.query_one("#job-body")))
        for expected in (
            "emb-018215-7c41e2",
            "embeddings",
            "nomic-embed-text",
            "gpu-l40s-02",  # the worker, with its status
            "gpu-l4-01, gpu-l4-02",  # the other workers of the partitioned job
            "2026-11-21 09:28:55 UTC",  # started
            "1m04s",  # elapsed, from the snapshot's own time
            "stream     no",
            "184,907 in / 0 out",
            "3,840/4,096 items",
            "40 done, 3 in flight, 1 failed",
            "10.0.9.14:52210",  # the client's address
        ):
            assert expected in text, expected
        assert "Cancel job" not in footer_keys(app)  # a snapshot: nothing to cancel
        await pilot.press("escape")
        assert not isinstance(app.screen, JobDetailScreen)
        assert app.current_view.view_id == "jobs"


async def test_cancel_a_job_from_its_detail_screen(gateway):
    import threading

    import httpx

    from gatewaytui.tui.screens.confirm import ConfirmScreen
    from gatewaytui.tui.screens.job_detail import JobDetailScreen

    worker = RawWorker(gateway.ws_url, "w", ["m"])
    results: list = []

    def chat() -> None:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        results.append(httpx.post(gateway.url + "/v1/chat/completions", json=body, timeout=30))

    thread = threading.Thread(target=chat)
    thread.start()
    job = worker.next_job()
    app = live_app(gateway.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3")
        await until(pilot, lambda: table(app).total_count == 1, what="job")
        await until(pilot, lambda: app._role is not None, what="role")
        await pilot.press("enter")
        assert isinstance(app.screen, JobDetailScreen)
        body = app.screen.query_one("#job-body")
        await until(pilot, lambda: "stream     yes" in "\n".join(screen_lines(body)))
        lines = "\n".join(screen_lines(body))
        assert job["job_id"] in lines and "127.0.0.1:" in lines  # the client's address
        await settle(pilot)
        assert "Cancel job" in footer_keys(app)
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        assert job["job_id"] in str(app.screen.body)
        await pilot.press("y")
        assert worker.cancels.get(timeout=5)["job_id"] == job["job_id"]
        await until(
            pilot,
            lambda: "no longer in flight" in "\n".join(screen_lines(body)),
            what="the job ended",
        )
        assert isinstance(app.screen, JobDetailScreen)
        ended = "\n".join(screen_lines(body))
        assert "as last seen" in ended and job["job_id"] in ended and "stream     yes" in ended
        await settle(pilot)
        assert "Cancel job" not in footer_keys(app)
    thread.join(10)


# ---- 5. heartbeat ages tick, whole seconds, stale ones highlighted --------------------------


def beat(app: GatewayApp, worker_id: str):
    """The BEAT cell of a worker, as the table renders it."""
    workers_table = app.query_one("#workers-table")
    column = next(c for c in workers_table.columns if c.key == "heartbeat")
    return column.render(workers_table.get_row(worker_id))


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
        await until(pilot, lambda: beat(app, "w").plain == "3s", timeout=6, what="3s old")
        cell = beat(app, "w")
        assert cell.style == "bold red"  # stale: older than twice the heartbeat interval
        assert any(line.rstrip().endswith("3s") for line in screen_lines(table(app)))
        worker.heartbeat()
        await until(pilot, lambda: beat(app, "w").plain in ("0s", "1s"), what="fresh again")
        assert beat(app, "w").style == ""


async def test_an_idle_overview_redraws_nothing(monkeypatch):
    app = offline_app()
    async with app.run_test(size=(120, 40)) as pilot:
        view = app.current_view
        for _ in range(3):  # the first samples: the labels get their figures once
            view.background_tick(app.store)
            view.tick()
        await pilot.pause()
        redrawn: list[str] = []
        for widget in view.query("Static, Sparkline"):
            monkeypatch.setattr(widget, "refresh", lambda *a, w=widget, **k: redrawn.append(w.id))
        for _ in range(5):  # nothing moves: no request, no token, the same alerts
            view.background_tick(app.store)
            view.tick()
        assert redrawn == []


# ---- 7. the header at 80 columns, and when the snapshot was taken ----------------------------


def header_lines(app: GatewayApp) -> list[str]:
    return screen_lines(app.query_one(GatewayHeader))


async def test_header_keeps_jobs_queue_and_version_at_80_columns():
    app = offline_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        await pilot.pause()
        lines = header_lines(app)
        assert len(lines) == 3
        assert "◆ snapshot 2026-11-21 09:30:00 UTC" in lines[0]  # when it was taken
        assert lines[1].strip() == "workers 9/13 · jobs 20 · queue 2/200 · gateway 0.1.0"
        assert "Workers" in lines[2]
        assert not any("…" in line for line in lines)
        assert len(app.query_one("#workers-table").visible_ids) == 13
        await pilot.resize_terminal(200, 40)
        await pilot.pause()
        lines = header_lines(app)
        assert len(lines) == 2  # wide: the counts fit next to the state
        assert "◆ offline snapshot taken 2026-11-21 09:30:00 UTC" in lines[0]
        assert lines[0].rstrip().endswith("jobs 20 · queue 2/200 · gateway 0.1.0")


async def test_live_header_fits_80_columns_on_two_lines_when_it_can(gateway):
    app = live_app(gateway.url, name="lab")
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.session.state.live, what="live")
        await until(pilot, lambda: "queue" in header_text(app), what="header")
        lines = header_lines(app)
        assert "● live" in lines[0] and "jobs 0" in "\n".join(lines)
        assert "queue 0/" in "\n".join(lines) and not any("…" in line for line in lines)


# ---- 9. a context switch: its theme (or the config's), no filter, no marks -------------------


def two_contexts(url: str) -> tuple[TuiConfig, ContextConfig]:
    one = ContextConfig(name="one", url=url, theme="gatewaytui-light")
    two = ContextConfig(name="two", url=url)  # no theme of its own
    return TuiConfig(contexts=[one, two], theme="gatewaytui-ansi"), one


async def test_context_switch_takes_the_config_theme_and_clears_filter_and_marks(gateway):
    for name in ("a", "b", "c"):
        RawWorker(gateway.ws_url, name, ["m"])
    config, one = two_contexts(gateway.url)
    app = GatewayApp(config, context=one, connection_options=FAST)
    async with app.run_test(size=(120, 40)) as pilot:
        assert app.theme == "gatewaytui-light"
        await pilot.press("2")
        await until(pilot, lambda: table(app).total_count == 3, what="workers")
        await pilot.press("slash", *"a|b", "enter")
        assert table(app).visible_count == 2
        await pilot.press("space")
        assert table(app).marked
        await choose_from_palette(pilot, "Context: two")
        await until(pilot, lambda: app.context_name == "two", what="switched")
        await until(pilot, lambda: table(app).total_count == 3, what="rows again")
        assert app.theme == "gatewaytui-ansi"  # the config's, not the old context's
        assert not table(app).marked and table(app).visible_count == 3
        assert app.current_view.filter_text == "" and "filter" not in header_text(app)
        assert not app.query_one("#filter-bar").has_class("-visible")
        await choose_from_palette(pilot, "Context: one")
        await until(pilot, lambda: app.theme == "gatewaytui-light", what="one's theme")


async def test_an_explicit_theme_wins_over_every_context_theme(gateway):
    config, one = two_contexts(gateway.url)
    app = GatewayApp(config, context=one, theme="gatewaytui-high-contrast", connection_options=FAST)
    async with app.run_test(size=(120, 40)) as pilot:
        assert app.theme == "gatewaytui-high-contrast"
        await choose_from_palette(pilot, "Context: two")
        await until(pilot, lambda: app.context_name == "two", what="switched")
        assert app.theme == "gatewaytui-high-contrast"


# ---- 10. events: follow mode and the filter ---------------------------------------------------


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


# ---- 11. a refused token: the message names the source this context uses ----------------------


@pytest.mark.parametrize("source", ["env", "file", "unset_env", "none"])
async def test_refused_token_message_names_the_configured_source(
    make_gateway, monkeypatch, tmp_path, source
):
    from gatewaytui.tui.widgets.banner import ConnectionBanner

    gw = make_gateway(server__operator_tokens="right")
    token_file = tmp_path / "prod.token"
    token_file.write_text("wrong\n")
    monkeypatch.setenv("PROD_TOKEN", "wrong")
    monkeypatch.delenv("UNSET_TOKEN", raising=False)
    fields = {
        "env": {"token_env": "PROD_TOKEN"},
        "file": {"token_file": token_file},
        "unset_env": {"token_env": "UNSET_TOKEN"},
        "none": {},
    }[source]
    context = ContextConfig(name="prod", url=gw.url, **fields)
    app = GatewayApp(TuiConfig(contexts=[context]), context=context, connection_options=FAST)
    async with app.run_test(size=(120, 40)) as pilot:
        banner = app.query_one(ConnectionBanner)
        await until(pilot, lambda: banner.has_class("-visible"), what="banner")
        text = " ".join(str(banner.render()).split())
        assert "prod" in text and "401" in text and "wrong" not in text
        if source == "env":
            assert "$PROD_TOKEN (this context's token_env)" in text
        elif source == "file":
            assert f"{token_file} (this context's token_file)" in text
        elif source == "unset_env":
            assert "$UNSET_TOKEN (this context's token_env), which is not set" in text
        else:
            assert "token_env: GATEWAYTUI_PROD_TOKEN" in text
        if source != "none":
            assert "GATEWAYTUI_PROD_TOKEN" not in text


# ---- 12. overview alerts, per-context read_only, drain from the worker detail ----------------


def alerts_text(app: GatewayApp) -> str:
    return "\n".join(screen_lines(app.query_one("#alerts")))


async def test_overview_alerts_a_growing_queue():
    app = offline_app()
    async with app.run_test(size=(120, 40)) as pilot:
        view = app.current_view
        assert "queue growing" not in alerts_text(app)
        server = dict(app.store.server)
        for length in range(1, 11):  # ten samples a second apart, each longer
            view.throughput.sample({**server, "queue": {"length": length}}, float(length))
        view.tick()
        await pilot.pause()
        assert "▲ queue growing: 10 waiting" in alerts_text(app)
        view.throughput.sample({**server, "queue": {"length": 3}}, 11.0)  # it drains
        view.tick()
        await pilot.pause()
        assert "queue growing" not in alerts_text(app)


async def test_overview_alerts_stale_heartbeats(tmp_path):
    import json

    state = json.loads(SAMPLE.read_text())
    late = next(w for w in state["workers"] if w["status"] == "idle")
    late["last_heartbeat"] = "2026-11-21T09:28:00.000Z"  # two minutes before the snapshot
    path = tmp_path / "stale.json"
    path.write_text(json.dumps(state))
    app = GatewayApp(TuiConfig(), snapshot=path, read_only=True)
    async with app.run_test(size=(120, 40)) as pilot:
        app.current_view.tick()
        await pilot.pause()
        stale_after = app.heartbeat_stale_after
        assert f"▲ stale heartbeat (> {stale_after:g}s): {late['id']}" in alerts_text(app)
        await pilot.press("2")
        assert beat(app, late["id"]).plain == "2m00s" and beat(app, late["id"]).style == "bold red"


async def test_a_read_only_context_hides_and_refuses_actions(gateway):
    from textual.command import CommandPalette

    from gatewaytui.tui.screens.confirm import ConfirmScreen

    RawWorker(gateway.ws_url, "w", ["m"])
    context = ContextConfig(name="prod", url=gateway.url, read_only=True)
    app = GatewayApp(TuiConfig(contexts=[context]), context=context, connection_options=FAST)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: table(app).total_count == 1, what="worker")
        await until(pilot, lambda: app._role is not None, what="role")  # an operator token
        assert app.read_only and "READ-ONLY" in header_text(app)
        await settle(pilot)
        assert not {"Drain", "Re-add"} & set(footer_keys(app))
        await pilot.press("d")
        assert not isinstance(app.screen, ConfirmScreen)
        assert gateway.sync(lambda: gateway.gateway.registry.get("w").counters.draining) is False
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette), what="palette")
        await pilot.press(*"s")
        await pilot.pause(0.3)  # the palette searches in a worker of its own
        from textual.command import CommandList

        hits = [str(o.prompt) for o in app.screen.query_one(CommandList).options]
        assert any("Save snapshot" in hit for hit in hits)
        assert not any("Server" in hit for hit in hits)  # no server drain / undrain


async def test_drain_from_the_worker_detail_screen(gateway):
    from gatewaytui.tui.screens.confirm import ConfirmScreen
    from gatewaytui.tui.screens.worker_detail import WorkerDetailScreen

    RawWorker(gateway.ws_url, "a", ["m"])
    RawWorker(gateway.ws_url, "b", ["m"])
    app = live_app(gateway.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: table(app).total_count == 2, what="workers")
        await until(pilot, lambda: app._role is not None, what="role")
        table(app).move_cursor_to("b")
        await pilot.press("space")  # a mark on the table behind must not widen the drain
        table(app).move_cursor_to("a")
        await pilot.press("enter")
        assert isinstance(app.screen, WorkerDetailScreen) and app.screen.worker_id == "a"
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.title_text == "Drain 1 worker(s)?" and "a" in str(app.screen.body)
        await pilot.press("y")
        await until(pilot, lambda: app.store.workers["a"]["status"] == "draining", what="drain")
        assert isinstance(app.screen, WorkerDetailScreen)
        body = app.screen.query_one("#detail-body")
        await until(pilot, lambda: "drained" in "\n".join(screen_lines(body)), what="shown")
        assert app.store.workers["b"]["status"] != "draining"


async def test_a_snapshot_shows_no_rate_rather_than_zero():
    """One snapshot has no two samples to take a rate from: `-`, not a misleading 0.0."""
    from textual.widgets import Static

    app = offline_app()
    async with app.run_test(size=(120, 40)) as pilot:
        view = app.current_view
        view.tick()
        view.tick()
        await pilot.pause()
        label = str(view.query_one("#req-label", Static).render())
        assert label.strip() == "requests/s  -"
        assert str(view.query_one("#tok-label", Static).render()).strip() == "tokens/s  -"


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


async def test_the_overview_says_when_the_gateway_cannot_be_reached(make_gateway):
    """Alerts from a stale state must not read 'nothing needs attention' while disconnected."""
    from textual.widgets import Static

    gateway = make_gateway()
    RawWorker(gateway.ws_url, "w", ["m"])
    app = live_app(gateway.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.session.state.live, what="live")
        alerts_box = app.current_view.query_one("#alerts", Static)
        app.current_view.tick()
        assert "not connected" not in str(alerts_box.render())
        gateway.stop()
        await until(pilot, lambda: not app.session.state.live, what="disconnected")
        app.current_view.tick()
        await pilot.pause()
        assert "✖ not connected to the gateway (reconnecting)" in str(alerts_box.render())


async def test_status_words_take_the_themes_colours_and_follow_a_theme_switch():
    """The ANSI theme's statuses are the terminal's own colours (SGR 94, not a 256-colour
    approximation), from the first frame on and after switching themes."""
    from pathlib import Path

    from gatewaytui.tui.config import TuiConfig

    sample = Path(__file__).parents[2] / "sample_state.json"
    app = GatewayApp(TuiConfig(), snapshot=sample, theme="gatewaytui-ansi")

    def working_color() -> str:
        strip = table(app).render_line(2)
        segment = next(s for s in strip if "working" in s.text)
        return segment.style.color.name

    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        assert working_color() == "color(12)"  # ansi_bright_blue
        app.theme = "gatewaytui-dark"
        await settle(pilot)
        assert working_color().startswith("#")


async def test_enter_on_an_event_shows_its_whole_message():
    from gatewaytui.tui.screens.event_detail import EventDetailScreen

    app = offline_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        longest = max(app.store.events, key=lambda e: len(e.get("message", "")))
        await until(pilot, lambda: table(app).move_cursor_to(str(longest["id"])), what="cursor")
        await pilot.press("enter")
        assert isinstance(app.screen, EventDetailScreen)
        await settle(pilot)
        body = "".join(screen_lines(app.screen.query_one("#event-body"))).replace(" ", "")
        assert longest["message"].replace(" ", "") in body  # all of it, wrapped, not cut
        await pilot.press("escape")
        assert not isinstance(app.screen, EventDetailScreen)


async def test_r_reconnects_at_once_while_the_gateway_cannot_be_reached(make_gateway):
    gateway = make_gateway()
    app = GatewayApp(
        TuiConfig(contexts=[ContextConfig(name="lab", url=gateway.url)]),
        context=ContextConfig(name="lab", url=gateway.url),
        connection_options={"backoff_base": 30, "backoff_cap": 30},  # a long wait to skip
    )
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.session.state.live, what="live")
        assert app.check_action("retry_now", ()) is False  # live: nothing to retry
        gateway.stop()
        await until(pilot, lambda: app.session.state.attempt >= 1, what="first retry scheduled")
        assert app.check_action("retry_now", ()) is True
        attempts = app.session.state.attempt
        await pilot.press("r")
        # The gateway stays down: the attempt r asked for fails at once, not after up to 30 s.
        await until(pilot, lambda: app.session.state.attempt > attempts, what="an attempt now")


async def test_a_dialog_footer_shows_its_own_keys_not_the_views():
    from rich.text import Text

    from gatewaytui.tui.screens.confirm import ConfirmScreen
    from gatewaytui.tui.screens.type_confirm import TypeToConfirmScreen

    app = offline_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await app.push_screen(ConfirmScreen("Drain?", Text("w"), "Drain"))
        await settle(pilot)
        assert footer_keys(app) == ["Yes", "No"]
        await pilot.press("n")
        await app.push_screen(TypeToConfirmScreen("Drain the server?", Text("b"), "lab"))
        await settle(pilot)
        assert footer_keys(app) == ["Cancel"]
        assert app.screen.query_one("#typed").value == ""  # nothing looks typed already
