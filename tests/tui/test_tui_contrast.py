"""Every status colour is readable on every row state of every shipped theme.

The table's rows have four looks: normal, marked, the cursor, and marked under the cursor;
each is measured with the table focused (the cursor bar, a 5 % tint) and blurred. The table
has no zebra striping, so there is no zebra background to measure. Colours are taken from the
running app (the theme's CSS as Textual computed it) and a status cell is drawn by the real
row renderer, so what is measured is what is drawn. WCAG 2 contrast: at least 7:1 in
`gatewaytui-high-contrast`, 4.5:1 elsewhere.

The ANSI theme's colours are palette indices whose RGB the terminal decides: they are
measured with xterm's default palette (below), the terminal's default background as xterm's
black and its default foreground as xterm's white (colour 7), as the theme's `ansi-background`
and `ansi-foreground` say.
"""

from __future__ import annotations

import pytest
from rich.color import Color, ColorType
from rich.style import Style

from gatewaytui.tui.formatting import status_text
from gatewaytui.tui.themes import SHIPPED_THEMES, STATUSES
from gatewaytui.tui.widgets.virtual_table import VirtualTable
from support.panel import offline_app

# xterm's default 16 colours (xterm's `XTerm` app-defaults: colour0 … colour15).
XTERM = [
    (0, 0, 0), (205, 0, 0), (0, 205, 0), (205, 205, 0),
    (0, 0, 238), (205, 0, 205), (0, 205, 205), (229, 229, 229),
    (127, 127, 127), (255, 0, 0), (0, 255, 0), (255, 255, 0),
    (92, 92, 255), (255, 0, 255), (0, 255, 255), (255, 255, 255),
]  # fmt: skip
DEFAULT_FG, DEFAULT_BG = XTERM[7], XTERM[0]
ROWS = ("normal", "marked", "cursor", "marked+cursor")


def rgb(color: Color | None, default: tuple[int, int, int]) -> tuple[int, int, int]:
    if color is None or color.type is ColorType.DEFAULT:
        return default
    if color.type in (ColorType.STANDARD, ColorType.EIGHT_BIT) and (color.number or 0) < 16:
        return XTERM[color.number or 0]
    triplet = color.get_truecolor()
    return triplet.red, triplet.green, triplet.blue


def luminance(color: tuple[int, int, int]) -> float:
    """WCAG 2 relative luminance."""

    def channel(value: int) -> float:
        v = value / 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in color)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def ratio(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def row_style(table: VirtualTable, row: str) -> Style:
    """The row's style, composed as `TableRenderer._render_row` composes it."""
    style = table.rich_style
    if "marked" in row:
        style += table.get_component_rich_style("virtual-table--marked", partial=False)
    if "cursor" in row:
        style += table.get_component_rich_style("virtual-table--cursor", partial=False)
    return style


async def measure() -> dict[tuple[str, str, str, str], float]:
    """(theme, focused|blurred, row, status) -> the contrast of the status word there."""
    found: dict[tuple[str, str, str, str], float] = {}
    app = offline_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        table = app.query_one("#workers-table", VirtualTable)
        renderer = table._renderer
        for theme in SHIPPED_THEMES:
            app.theme = theme
            for focus in ("focused", "blurred"):
                if focus == "focused":
                    table.focus()
                else:
                    app.set_focus(None)
                await pilot.pause()
                for row in ROWS:
                    style = row_style(table, row)
                    for status in STATUSES:
                        text = status_text(status, app.status_styles)
                        cells = renderer._text_segments(text, 14, "left", style, "cursor" in row)
                        word = next(s for s in cells if s.text.strip())
                        assert word.style is not None
                        fg = rgb(word.style.color, DEFAULT_FG)
                        bg = rgb(word.style.bgcolor, DEFAULT_BG)
                        found[(theme, focus, row, status)] = ratio(fg, bg)
    return found


async def test_every_status_is_readable_on_every_row_of_every_theme():
    found = await measure()
    assert {key[0] for key in found} == set(SHIPPED_THEMES)
    failing = [
        f"{theme} {focus} {row}: {status} {value:.2f}:1"
        for (theme, focus, row, status), value in sorted(found.items())
        if value < (7.0 if theme == "gatewaytui-high-contrast" else 4.5)
    ]
    assert not failing, "\n".join(failing)


@pytest.mark.parametrize(
    ("theme", "row", "status"),
    [
        ("gatewaytui-high-contrast", "cursor", "draining"),  # was yellow on yellow, 1.0:1
        ("gatewaytui-light", "cursor", "working"),  # was blue on blue, 1.0:1
    ],
)
async def test_the_cases_the_issue_saw(theme: str, row: str, status: str):
    found = await measure()
    assert found[(theme, "focused", row, status)] >= 4.5
