"""The Plugins view: what exists, what is in effect and why, and the export."""

from __future__ import annotations

import httpx
import pytest
from textual.widgets import OptionList

from gatewaytui.schema.options_export import export_config
from gatewaytui.tui.app import GatewayApp
from gatewaytui.tui.config import ContextConfig, TuiConfig
from gatewaytui.tui.screens.export import ExportScreen
from support.panel import offline_app, snapshot_app
from support.waiting import until

SECRET = "sk-very-secret-value"


def visible(widget) -> str:
    return "\n".join(widget.render_line(y).text for y in range(widget.size.height))


async def test_plugins_view_lists_every_option_and_marks_changes():
    app = offline_app()
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.press("7")
        table = app._deck.table()
        plugins = app.store.items["plugins"]
        assert table.total_count == sum(len(p["args"]) for p in plugins.values())
        lines = visible(table)
        assert "0.0.0.0 *" in lines  # server.host set in YAML: differs from the default
        assert "127.0.0.1 *" not in lines
        await pilot.press("slash", *"timeout", "enter")
        assert 0 < table.visible_count < table.total_count
        assert all("timeout" in row_id for row_id in table.visible_ids)
        await pilot.press("escape")
        option_list = app.query_one("#plugin-list", OptionList)
        option_list.focus()
        await pilot.press("down", "down")  # all -> server -> llm
        assert {row_id.split(".")[0] for row_id in table.visible_ids} == {"llm"}
        table.focus()
        table.move_cursor_to("llm.max_queue")
        await pilot.pause()
        detail = visible(app.query_one("#arg-detail"))
        assert "deprecated: use llm.queue_size" in detail


async def test_export_shows_each_format_and_copies_it():
    app = offline_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("7", "e")
        assert isinstance(app.screen, ExportScreen)
        screen = app.screen
        assert "plugin_options:" in screen.text and "queue_size: 200" in screen.text
        await pilot.press("v")
        assert "LLM_QUEUE_SIZE=200" in screen.text
        await pilot.press("f")
        assert "--llm-queue-size 200" in screen.text
        await pilot.press("a")
        assert "--server-port 8080" in screen.text  # every option, defaults too
        await pilot.press("c")
        assert app.clipboard == screen.text
        await pilot.press("escape")
        assert not isinstance(app.screen, ExportScreen)


async def test_secrets_never_reach_the_api_the_screen_or_the_export(make_gateway):
    gw = make_gateway(server__api_keys=SECRET)
    plugins_body = httpx.get(gw.url + "/api/plugins").text
    state_body = httpx.get(gw.url + "/api/state").text
    assert SECRET not in plugins_body and SECRET not in state_body
    context = ContextConfig(name="gw", url=gw.url)
    app = GatewayApp(TuiConfig(contexts=[context]), context=context)
    async with app.run_test(size=(200, 60)) as pilot:
        await pilot.press("7")
        await until(pilot, lambda: app._deck.table().total_count > 0, what="options")
        table = app._deck.table()
        table.move_cursor_to("server.api_keys")
        await pilot.pause()
        screen_text = visible(table) + visible(app.query_one("#arg-detail"))
        assert "server    api_keys" in screen_text and "set" in screen_text
        assert SECRET not in screen_text
        await pilot.press("e", "a")
        assert SECRET not in app.screen.text
        assert "secrets are left out: server.api_keys" in app.screen.text


@pytest.mark.parametrize(
    ("fmt", "expected"), [("yaml", ""), ("env", ""), ("flags", "gatewaytui serve\n")]
)
def test_export_when_nothing_changed(fmt, expected):
    plugins = [
        {
            "id": "llm",
            "args": [
                {"id": "queue_size", "type": "int", "value": "256", "default": "256",
                 "source": "default", "env": "LLM_QUEUE_SIZE", "flag": "--llm-queue-size"},
            ],
        }
    ]  # fmt: skip
    assert export_config(plugins, fmt) == expected
    assert "256" in export_config(plugins, fmt, changed_only=False)


def test_plugins_view_snapshot(snap_compare):
    app = snapshot_app()
    assert snap_compare(app, press=("7",), terminal_size=(120, 40))


def test_plugins_view_snapshot_narrow(snap_compare):
    app = snapshot_app()
    assert snap_compare(app, press=("7",), terminal_size=(80, 24))


def test_export_snapshot(snap_compare):
    app = snapshot_app()
    assert snap_compare(app, press=("7", "e"), terminal_size=(100, 30))


def test_the_detail_pane_lists_allowed_values_when_the_gateway_sends_them():
    from gatewaytui.tui.views.plugins import describe_arg

    arg = {
        "id": "scheduler",
        "type": "string",
        "description": "Worker pick strategy.",
        "choices": ["least-busy", "round-robin", "fill-first"],
        "default": "least-busy",
    }
    assert "one of least-busy, round-robin, fill-first" in describe_arg("llm", arg).plain
    assert "one of" not in describe_arg("llm", {**arg, "choices": []}).plain
