"""The header: the context's colour badge in every colour form the config accepts, and
what the header keeps at 80 columns (offline and live)."""

from __future__ import annotations

import pytest

from gatewaytui.tui.app import GatewayApp
from gatewaytui.tui.config import ContextConfig, TuiConfig
from gatewaytui.tui.widgets.header import GatewayHeader
from support.panel import (
    FAST,
    header_text,
    live_app,
    offline_app,
    screen_lines,
)
from support.waiting import until

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
        header = app.query_one(GatewayHeader)
        await until(  # drawn once the app has started (later on a busy machine)
            pilot,
            lambda: getattr(header, "_plain", "").startswith(" PRODUCTION "),
            what="the badge",
        )
        badge = next(span for span in header._spans if span.start == 0)
        assert badge.style.reverse and badge.style.bold
        assert badge.style.color.name == expected


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
        # 8 serving: working 6, idle 1, connected 1 (mac-studio-01 is unresponsive since 364a058)
        assert lines[1].strip() == "workers 8/13 · jobs 20 · queue 2/200 · gateway 0.1.0"
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
        # The header redraws from its own state after the session's: wait for what it shows.
        await until(pilot, lambda: "● live" in header_text(app), what="the live header")
        lines = header_lines(app)
        assert "● live" in lines[0] and "jobs 0" in "\n".join(lines)
        assert "queue 0/" in "\n".join(lines) and not any("…" in line for line in lines)
