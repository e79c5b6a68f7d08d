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
from support.paths import REPO, SAMPLE
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


OPENS = {"1": False, "2": True, "3": True, "4": True, "5": False, "6": True, "7": False, "0": True}


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
        table_widget = app._deck.table()
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


def _key_tokens(text: str) -> set[str]:
    """`1 … 7` -> 1..7; `1 … 9, 0` -> 0..9; `o / O`, `esc, q` -> each key."""
    text = text.replace("`", "")
    if "…" in text:
        first, rest = (part.strip() for part in text.split("…"))
        last, *more = (part.strip() for part in rest.split(","))
        return {str(n) for n in range(int(first), int(last) + 1)} | set(more)
    return {key.strip() for part in text.split(" / ") for key in part.split(",") if key.strip()}


def _readme_keys() -> set[str]:
    """The key column of the README's `### Keys` table."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    table = text.split("### Keys", 1)[1].split("\n\n", 2)[1]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert rows, "the README's key table is missing"
    return set().union(*(_key_tokens(row.split("|")[1].strip()) for row in rows))


async def test_readme_key_table_help_and_bindings_agree():
    """The help lists every described binding with its real keys, and the README's key table
    names exactly the keys the help shows: a new, removed or moved key fails here."""
    from gatewaytui.tui.bindings import key_display, known_binding_ids, panel_classes
    from gatewaytui.tui.screens.help import HelpScreen

    declared = {
        binding.id: set(key_display(binding.key).split(", "))
        for cls in panel_classes()
        for binding in vars(cls)["BINDINGS"]
        if binding.id
    }
    described = {
        binding.id
        for cls in panel_classes()
        for binding in vars(cls)["BINDINGS"]
        if binding.tooltip
    }
    app = offline_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        rows = app.screen.rows()
    shown_ids: set[str] = set()
    help_keys: set[str] = set()
    for keys, what, ids in rows:
        assert what, f"{ids}: no description"
        if ids.endswith("_N"):  # app.view_N: every numbered binding of that prefix
            id_list = sorted(i for i in declared if i.removeprefix(ids[:-1]).isdigit())
        else:
            id_list = ids.split(", ")
        assert set(id_list) <= known_binding_ids(), f"help names unknown ids: {ids}"
        bound = set().union(*(declared[i] for i in id_list))
        assert _key_tokens(keys) == bound, f"help shows {keys!r} for {ids}, bound: {bound}"
        shown_ids.update(id_list)
        help_keys |= bound
    assert described <= shown_ids, f"described but not in the help: {described - shown_ids}"
    readme = _readme_keys()
    assert readme == help_keys, (
        f"README only: {sorted(readme - help_keys)}; help only: {sorted(help_keys - readme)}"
    )
