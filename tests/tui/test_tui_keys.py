"""Keys: the config's keymap in the running app (the palette's too), and the footer: only
keys that do something, help and quit at any width, a dialog's own keys."""

from __future__ import annotations

import pytest

from gatewaytui.tui.app import GatewayApp
from gatewaytui.tui.config import TuiConfig
from support.panel import (
    footer_keys,
    offline_app,
    settle,
)
from support.paths import SAMPLE
from support.waiting import until


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
