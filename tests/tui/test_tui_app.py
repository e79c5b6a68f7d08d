"""The panel driven as an operator would: keys in, gateway calls and screens out.

Live tests run a real gateway on a loopback port and real workers; the panel reaches the
gateway only through the client layer, as it would over SSH.
"""

from __future__ import annotations

import json
import threading

import httpx
import pytest
from textual.widgets import Input

from gatewaytui.tui.app import GatewayApp
from gatewaytui.tui.config import TuiConfig
from gatewaytui.tui.screens.confirm import ConfirmScreen
from gatewaytui.tui.screens.type_confirm import TypeToConfirmScreen
from gatewaytui.tui.screens.worker_detail import WorkerDetailScreen
from gatewaytui.tui.widgets.banner import ConnectionBanner
from support.panel import header_text, live_app, offline_app, table
from support.paths import SAMPLE
from support.raw_worker import RawWorker
from support.waiting import until

MESSAGES = [{"role": "user", "content": "hi"}]


def visible_lines(widget) -> list[str]:
    return [widget.render_line(y).text for y in range(widget.size.height)]


# ---- offline snapshot ---------------------------------------------------------------------


async def test_offline_snapshot_is_read_only_and_shows_every_view():
    app = offline_app()
    async with app.run_test(size=(120, 40)) as pilot:
        assert "READ-ONLY" in header_text(app) and "offline" in header_text(app)
        await pilot.press("2")
        assert app.current_view.view_id == "workers"
        assert table(app).total_count == 13
        await pilot.press("3")
        assert table(app).total_count == 20
        await pilot.press("4")
        assert table(app).total_count >= 10
        await pilot.press("1")
        assert app.current_view.view_id == "overview"
        await pilot.press("2", "d")
        assert not isinstance(app.screen, ConfirmScreen)  # refused, not asked
        assert app.check_action("drain", ()) is False  # hidden from the footer too


async def test_filter_sort_marks_and_details():
    app = offline_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2", "slash")
        await pilot.press(*"h100")
        assert table(app).visible_count == 3
        assert "filter /h100/" in header_text(app)
        await pilot.press("enter")  # keep the filter, back to the table
        assert table(app).has_focus
        await pilot.press("slash", "end", "[")  # `h100[`: not a regex
        filter_input = app.query_one("#filter", Input)
        assert filter_input.has_class("-invalid")  # a bad regex is shown, not applied
        assert table(app).visible_count == 3
        await pilot.press("escape")  # clears the filter
        assert table(app).visible_count == 13 and not app.current_view.filter_text
        first = table(app).cursor_id
        await pilot.press("o")  # sort by the next column
        assert table(app).sort_column != "id"
        assert table(app).cursor_id == first  # the cursor stays on its row
        await pilot.press("space", "space")  # space marks and moves down
        assert len(table(app).marked) == 2
        assert "2 marked" in header_text(app)
        await pilot.press("escape")
        assert not table(app).marked
        await pilot.press("enter")
        assert isinstance(app.screen, WorkerDetailScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, WorkerDetailScreen)


async def test_wire_strings_are_never_markup(tmp_path):
    state = json.loads(SAMPLE.read_text())
    state["workers"][0]["name"] = "[bold red]evil[/]"
    state["workers"][0]["last_error"] = "[link=http://x]click[/link]"
    path = tmp_path / "evil.json"
    path.write_text(json.dumps(state))
    app = GatewayApp(TuiConfig(), snapshot=path, read_only=True)
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.press("2")
        # Shown literally (the NAME column, 14 wide, cuts the rest): brackets, not bold red.
        assert any("[bold red]ev" in line for line in visible_lines(table(app)))
        table(app).move_cursor_to(state["workers"][0]["id"])
        await pilot.press("enter")
        detail = app.screen.query_one("#detail-body")
        lines = [detail.render_line(y).text for y in range(detail.size.height)]
        assert any("[link=http://x]click[/link]" in line for line in lines)


async def test_save_snapshot_writes_a_loadable_file(tmp_path):
    config = TuiConfig(snapshot_dir=tmp_path)
    app = GatewayApp(config, snapshot=SAMPLE, read_only=True)
    async with app.run_test() as pilot:
        await pilot.press("S")
        await pilot.pause()
    (saved,) = tmp_path.glob("gatewaytui-*.json")
    reopened = GatewayApp(TuiConfig(), snapshot=saved, read_only=True)
    async with reopened.run_test() as pilot:
        await pilot.press("2")
        assert table(reopened).total_count == 13


# ---- live: actions ------------------------------------------------------------------------


def chat_in_thread(url: str, results: list) -> threading.Thread:
    def run() -> None:
        body = {"model": "m", "messages": MESSAGES}
        results.append(httpx.post(url + "/v1/chat/completions", json=body, timeout=30))

    thread = threading.Thread(target=run)
    thread.start()
    return thread


async def test_drain_confirm_gateway_called_progress_then_undrain(gateway):
    busy = RawWorker(gateway.ws_url, "busy", ["m"])
    RawWorker(gateway.ws_url, "spare", ["m"])
    results: list = []
    thread = chat_in_thread(gateway.url, results)
    job = busy.next_job()
    app = live_app(gateway.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: table(app).total_count == 2, what="workers")
        table(app).move_cursor_to("busy")
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.focused.id == "cancel"  # the default is Cancel
        assert "busy" in str(app.screen.body) and "1 job in flight" in str(app.screen.body)
        await pilot.press("n")  # cancelled: nothing sent
        assert not isinstance(app.screen, ConfirmScreen)
        assert gateway.sync(lambda: gateway.gateway.registry.get("busy").counters.draining) is False
        await pilot.press("d", "y")
        await until(
            pilot,
            lambda: gateway.sync(lambda: gateway.gateway.registry.get("busy").counters.draining),
        )
        await until(pilot, lambda: app.store.workers["busy"]["status"] == "draining")
        assert "busy (1 left)" in header_text(app)
        busy.reply_chat(job)
        await until(pilot, lambda: "busy" not in app.drain_watch, what="drain finished")
        assert "busy" not in header_text(app).split("draining:")[-1]
        await pilot.press("u")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await until(pilot, lambda: app.store.workers["busy"]["status"] in ("idle", "connected"))
    thread.join(10)
    assert results[0].status_code == 200


async def test_marked_workers_are_drained_together(gateway):
    for name in ("a", "b", "c"):
        RawWorker(gateway.ws_url, name, ["m"])
    app = live_app(gateway.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: table(app).total_count == 3)
        table(app).move_cursor_to("a")
        await pilot.press("space", "space", "d")  # space marks and moves down
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.title_text == "Drain 2 workers?"
        await pilot.press("y")
        await until(
            pilot,
            lambda: (
                {w for w, v in app.store.workers.items() if v["status"] == "draining"} == {"a", "b"}
            ),
        )
        assert not table(app).marked


async def test_refused_action_shows_the_gateways_reason(gateway):
    worker = RawWorker(gateway.ws_url, "w", ["m"])
    app = live_app(gateway.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: table(app).total_count == 1)
        worker.close()  # gone before the operator confirms
        gateway.wait_for(lambda g: g.registry.get("w").status.value == "gone")
        # The panel must see it gone too: while it still shows `ready`, the drain would take
        # model m's last ready worker and the dialog rightly asks for the model's name.
        await until(pilot, lambda: app.store.workers["w"]["status"] == "gone", what="gone row")
        await pilot.press("d", "y")
        await until(
            pilot,
            lambda: any("is gone" in n.message for n in app._notifications),
            what="refusal notice",
        )


async def test_cancel_job_from_the_jobs_view(gateway):
    worker = RawWorker(gateway.ws_url, "w", ["m"])
    results: list = []
    thread = chat_in_thread(gateway.url, results)
    job = worker.next_job()
    app = live_app(gateway.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3")
        await until(pilot, lambda: table(app).total_count == 1)
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        assert job["job_id"] in str(app.screen.body)
        await pilot.press("y")
        assert worker.cancels.get(timeout=20)["job_id"] == job["job_id"]
        await until(pilot, lambda: table(app).total_count == 0)
    thread.join(10)
    assert results[0].status_code == 503


async def test_server_drain_needs_the_context_name_typed(gateway):
    RawWorker(gateway.ws_url, "w", ["m"])
    app = live_app(gateway.url, name="prod")
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.session.state.live)
        await until(pilot, lambda: app._role is not None, what="role")
        app.actions.request_server_action("drain")
        await pilot.pause()
        assert isinstance(app.screen, TypeToConfirmScreen)
        await pilot.press(*"prd", "enter")  # a typo does not confirm
        assert isinstance(app.screen, TypeToConfirmScreen)
        app.screen.query_one(Input).value = ""
        await pilot.press(*"prod", "enter")
        await until(pilot, lambda: app.store.server.get("status") == "draining")
        assert gateway.sync(lambda: gateway.gateway.draining)
        app.actions.request_server_action("undrain")
        await pilot.pause()
        await pilot.press(*"prod", "enter")
        await until(pilot, lambda: app.store.server.get("draining") is False)


async def test_viewer_token_makes_the_panel_read_only(make_gateway, monkeypatch):
    gw = make_gateway(server__viewer_tokens="look", server__operator_tokens="act")
    RawWorker(gw.ws_url, "w", ["m"])
    monkeypatch.setenv("PANEL_TOKEN", "look")
    app = live_app(gw.url, token_env="PANEL_TOKEN")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: table(app).total_count == 1)
        await until(pilot, lambda: app._role == "viewer", what="role")
        assert app.read_only and app.check_action("drain", ()) is False
        assert "READ-ONLY" in header_text(app)


async def test_read_only_flag_hides_and_refuses_actions(gateway):
    RawWorker(gateway.ws_url, "w", ["m"])
    app = live_app(gateway.url, read_only=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: table(app).total_count == 1)
        assert app.check_action("drain", ()) is False
        await pilot.press("d")
        assert not isinstance(app.screen, ConfirmScreen)
        assert gateway.sync(lambda: gateway.gateway.registry.get("w").counters.draining) is False


async def test_wrong_token_names_the_context_and_how_to_fix_it(make_gateway, monkeypatch):
    gw = make_gateway(server__operator_tokens="right")
    monkeypatch.setenv("PROD_TOKEN", "wrong")
    app = live_app(gw.url, token_env="PROD_TOKEN", name="prod")
    async with app.run_test(size=(120, 40)) as pilot:
        banner = app.query_one(ConnectionBanner)
        await until(pilot, lambda: banner.has_class("-visible"), what="banner")
        text = str(banner.render())
        assert "prod" in text and "401" in text and "token_env" in text
        assert "wrong" not in text


async def test_pause_freezes_the_screen_until_resumed(gateway):
    RawWorker(gateway.ws_url, "first", ["m"])
    app = live_app(gateway.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: table(app).total_count == 1)
        await pilot.press("p")
        assert "PAUSED" in header_text(app)
        RawWorker(gateway.ws_url, "second", ["m"])
        await until(pilot, lambda: "second" in app.store.workers, what="store update")
        # The update reached the panel's feed, which holds it back instead of drawing it.
        await until(pilot, lambda: app.feed._pending is not None, what="a held update")
        await pilot.pause()
        assert table(app).total_count == 1  # frozen
        await pilot.press("p")
        await until(pilot, lambda: table(app).total_count == 2)


# ---- live: connection loss ----------------------------------------------------------------


async def test_gateway_restart_resyncs_without_stale_rows(make_gateway):
    from gatewaytui.gateway.config import GatewayConfig
    from support.gateway_harness import RunningGateway

    first = make_gateway()
    RawWorker(first.ws_url, "old", ["m"])
    app = live_app(first.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: table(app).total_count == 1)
        port = first.port
        first.stop()
        banner = app.query_one(ConnectionBanner)
        await until(pilot, lambda: banner.has_class("-visible"), what="unreachable banner")
        assert "Cannot reach" in str(banner.render())
        second = RunningGateway(GatewayConfig.build(), port=port)
        try:
            RawWorker(second.ws_url, "new", ["m"])
            await until(pilot, lambda: app.session.state.live, timeout=15, what="reconnect")
            await until(pilot, lambda: set(app.store.workers) == {"new"}, what="resync")
            await until(pilot, lambda: table(app).visible_ids == ("new",), what="no stale rows")
            assert not banner.has_class("-visible")
        finally:
            second.stop()


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_every_view_renders_at_size(size):
    app = offline_app()
    async with app.run_test(size=size) as pilot:
        for key in ("1", "2", "3", "4", "question_mark", "escape"):
            await pilot.press(key)
            await pilot.pause()
        assert app.current_view.view_id == "events"
