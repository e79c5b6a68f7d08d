"""The panel under Pilot: an app on the saved snapshot or on a live gateway, and what tests
read from it."""

from __future__ import annotations

from typing import Any

from gatewaytui.tui.app import GatewayApp
from gatewaytui.tui.config import ContextConfig, TuiConfig
from gatewaytui.tui.widgets.header import GatewayHeader
from gatewaytui.tui.widgets.virtual_table import VirtualTable
from support.paths import SAMPLE
from support.waiting import until

# Reconnect quickly: tests restart gateways and wait for the panel to notice.
FAST = {"backoff_base": 0.05, "backoff_cap": 0.2}


def offline_app(**kwargs: Any) -> GatewayApp:
    """The panel on sample_state.json, read-only, no gateway."""
    return GatewayApp(TuiConfig(), snapshot=SAMPLE, read_only=True, **kwargs)


def snapshot_app(**kwargs: Any) -> GatewayApp:
    """`offline_app` with its 1 Hz tick stopped, for SVG snapshots: the tick samples rates and
    redraws the Overview's labels, so a picture taken after a second (a slow start on a busy
    machine) differed from one taken before it. The stored pictures have no tick."""
    app = offline_app(**kwargs)
    feed = app.feed  # LiveFeed: the app runs `feed.tick` once a second from on_mount
    assert callable(getattr(feed, "tick", None)), "the 1 Hz tick moved: update snapshot_app"
    feed.tick = lambda: None  # type: ignore[method-assign]
    return app


def live_app(
    url: str, *, token_env: str | None = None, name: str = "test", **kwargs: Any
) -> GatewayApp:
    """The panel on one context pointing at `url`, reconnecting fast."""
    context = ContextConfig(name=name, url=url, token_env=token_env)
    config = TuiConfig(contexts=[context], default_context=name)
    return GatewayApp(config, context=context, connection_options=FAST, **kwargs)


def table(app: GatewayApp) -> VirtualTable:
    """The current view's table (the view must have one)."""
    found = app._deck.table()
    assert found is not None
    return found


def header_text(app: GatewayApp) -> str:
    return str(app.query_one(GatewayHeader).render())


def screen_lines(widget: Any) -> list[str]:
    """A widget's rendered lines, right-stripped."""
    return [widget.render_line(y).text.rstrip() for y in range(widget.size.height)]


# Terminal sizes the snapshot tests draw at: the roomy one and the smallest supported.
SIZES = {"wide": (120, 40), "narrow": (80, 24)}


async def still(pilot: Any) -> None:
    """No blinking cursor, no animation: the same picture every run (a snapshot's run_before)."""
    pilot.app.query_one("#filter").cursor_blink = False
    await pilot.pause()


def footer_keys(app: GatewayApp) -> list[str]:
    """The descriptions the footer shows right now."""
    from textual.widgets._footer import FooterKey

    return [key.description for key in app.screen.query(FooterKey)]


async def settle(pilot: Any) -> None:
    """The footer recomposes after the bindings change (after a refresh)."""
    for _ in range(3):
        await pilot.pause()


def beat(app: GatewayApp, worker_id: str) -> Any:
    """The BEAT cell of a worker, as the table renders it."""
    workers_table = app.query_one("#workers-table", VirtualTable)
    column = next(c for c in workers_table.columns if c.key == "heartbeat")
    return column.render(workers_table.get_row(worker_id))


async def open_palette(pilot: Any) -> None:
    """ctrl+p, once the palette is up, with each search it starts recorded (`palette_searched`
    waits for the search of the text typed last, not for an earlier one's hits)."""
    from textual.command import CommandPalette

    await pilot.press("ctrl+p")
    await until(pilot, lambda: isinstance(pilot.app.screen, CommandPalette), what="palette")
    palette = pilot.app.screen
    gather = palette._gather_commands  # a @work method: one worker per search
    searches: list[tuple[str, Any]] = []

    def recorded(search_value: str) -> Any:
        worker = gather(search_value)
        searches.append((search_value, worker))
        return worker

    palette._gather_commands = recorded
    palette.searches_for_tests = searches


def palette_searched(app: GatewayApp, text: str) -> bool:
    """The command palette has finished its search for `text` and found something. Typing
    sets the input at once but each search starts only when the palette handles the change,
    so the hits on screen may still be an earlier prefix's: wait for this text's worker."""
    from textual.command import CommandList, CommandPalette

    palette = app.screen
    if not isinstance(palette, CommandPalette):
        return False
    searches = palette.searches_for_tests  # set by `open_palette`
    if not searches or searches[-1][0] != text.strip() or not searches[-1][1].is_finished:
        return False
    return palette.query_one(CommandList).option_count > 0


async def choose_from_palette(pilot: Any, text: str) -> None:
    """Open the palette, type `text`, take the first hit once its search is done."""
    from textual.command import CommandPalette

    await open_palette(pilot)
    await pilot.press(*text)
    await until(pilot, lambda: palette_searched(pilot.app, text), what=f"hits for {text!r}")
    await pilot.press("enter")
    await until(pilot, lambda: not isinstance(pilot.app.screen, CommandPalette), what="closed")
