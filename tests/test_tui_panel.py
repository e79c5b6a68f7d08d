"""The panel's rough edges, driven with Pilot: notifications that carry gateway text, context
colours, broken token files, the palette's binding id and the keymap, the footer and header
at 80 columns, the job detail screen, heartbeat ages, context switches, follow mode."""

from __future__ import annotations

import pytest
from textual.widgets._toast import Toast

from gatewaytui.client.errors import ActionError
from gatewaytui.tui.app import GatewayApp
from gatewaytui.tui.config import ConfigError, ContextConfig, TuiConfig
from gatewaytui.tui.widgets.header import GatewayHeader
from raw_worker import RawWorker
from test_tui_app import FAST, SAMPLE, header_text, live_app, table, until


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
        ("rgb(1, 2, 3)", "#010203"),
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
