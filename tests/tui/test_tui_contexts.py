"""Contexts: broken token files, switching (theme, filter, marks), a refused token's
message naming its source, a read-only context, and reconnecting at once with `r`."""

from __future__ import annotations

import pytest

from gatewaytui.tui.app import GatewayApp
from gatewaytui.tui.config import ConfigError, ContextConfig, TuiConfig
from support.panel import (
    FAST,
    choose_from_palette,
    footer_keys,
    header_text,
    open_palette,
    palette_searched,
    settle,
    table,
)
from support.raw_worker import RawWorker
from support.waiting import until

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing answers


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
        assert app.session.name == "local" and " local " in header_text(app)


def test_starting_on_a_context_with_a_broken_token_file_is_a_config_error(tmp_path):
    missing = ContextConfig(name="prod", url=UNREACHABLE, token_file=tmp_path / "prod.token")
    with pytest.raises(ConfigError, match=r"context 'prod': token file not found: .*prod\.token"):
        GatewayApp(TuiConfig(contexts=[missing]), context=missing)
    (tmp_path / "prod.token").write_text("  \n")
    with pytest.raises(ConfigError, match=r"context 'prod': token file is empty: .*prod\.token"):
        GatewayApp(TuiConfig(contexts=[missing]), context=missing)


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
        await until(pilot, lambda: app.session.name == "two", what="switched")
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
        await until(pilot, lambda: app.session.name == "two", what="switched")
        assert app.theme == "gatewaytui-high-contrast"


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


async def test_a_read_only_context_hides_and_refuses_actions(gateway):

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
        await open_palette(pilot)
        await pilot.press(*"s")
        await until(pilot, lambda: palette_searched(app, "s"), what="the palette's hits")
        from textual.command import CommandList

        hits = [str(o.prompt) for o in app.screen.query_one(CommandList).options]
        assert any("Save snapshot" in hit for hit in hits)
        assert not any("Server" in hit for hit in hits)  # no server drain / undrain


async def test_r_reconnects_at_once_while_the_gateway_cannot_be_reached(make_gateway):
    gateway = make_gateway()
    app = GatewayApp(
        TuiConfig(contexts=[ContextConfig(name="lab", url=gateway.url)]),
        context=ContextConfig(name="lab", url=gateway.url),
        # A long wait to skip (no early 1 s cap, no probe ending it when the gateway answers).
        connection_options={"backoff_base": 30, "backoff_cap": 30, "early_attempts": 0},
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
