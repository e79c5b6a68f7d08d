"""Which columns a VirtualTable shows at a width, and how wide each is drawn.

Columns have a preferred width, a minimum and a priority: when the table is narrow, the
highest-priority-number columns are dropped first, and the `flex` column absorbs any spare
width, so a table fits 80 columns without horizontal scrolling. Pure: unit-testable as is.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len, set_cell_size

from gatewaytui.tui.widgets.table_model import Align, Column

__all__ = ["GUTTER", "ColumnLayout", "fit"]

GUTTER = 2
"""Leading columns of every line: the mark glyph and a space."""

Layout = tuple[tuple[int, int], ...]
"""(column index, drawn width) of the columns shown, in definition order."""


def fit(text: str, width: int, align: Align) -> str:
    """Truncate (with an ellipsis) or pad plain text to exactly `width` cells."""
    length = len(text) if text.isascii() else cell_len(text)
    if length > width:
        text = set_cell_size(text, width - 1) + "…" if width > 1 else set_cell_size(text, width)
        return text
    pad = width - length
    if not pad:
        return text
    if align == "right":
        return " " * pad + text
    if align == "center":
        left = pad // 2
        return " " * left + text + " " * (pad - left)
    return text + " " * pad


class ColumnLayout:
    """The columns' layout per table width, computed once per width and cached."""

    def __init__(self, columns: Sequence[Column]) -> None:
        self.columns = tuple(columns)
        self._layouts: dict[int, Layout] = {}
        self.hidden: frozenset[int] = frozenset()
        """Columns left out at every width (a fleet's REPLICA column on a single node)."""

    def hide(self, hidden: frozenset[int]) -> bool:
        """Leave these columns out (at least one column stays); True if that changed."""
        if hidden == self.hidden or len(hidden) >= len(self.columns):
            return False
        self.hidden = hidden
        self._layouts.clear()
        return True

    def __call__(self, width: int) -> Layout:
        """(column index, width) of the columns shown at `width`, in definition order."""
        layout = self._layouts.get(width)
        if layout is None:
            layout = self._layouts[width] = self._compute(width)
        return layout

    def _compute(self, width: int) -> Layout:
        columns = self.columns
        available = max(1, width - GUTTER)
        shown = set(range(len(columns))) - self.hidden

        def needed() -> int:
            return sum(columns[i].minimum for i in shown) + len(shown) - 1

        # Drop the highest priority numbers first; among equals, the rightmost first.
        for index in sorted(shown, key=lambda i: (columns[i].priority, i), reverse=True):
            if len(shown) == 1 or needed() <= available:
                break
            shown.discard(index)
        indices = sorted(shown)
        widths = {i: columns[i].minimum for i in indices}
        spare = available - needed()
        if spare < 0:  # a single column wider than the table: clip it
            widths[indices[0]] = available
            return ((indices[0], available),)
        # Grow towards the preferred widths, most important columns first.
        for i in sorted(indices, key=lambda i: (columns[i].priority, i)):
            grow = min(spare, columns[i].width - widths[i])
            widths[i] += grow
            spare -= grow
        flex = [i for i in indices if columns[i].flex]
        if flex and spare:
            share, extra = divmod(spare, len(flex))
            for n, i in enumerate(flex):
                widths[i] += share + (1 if n < extra else 0)
        return tuple((i, widths[i]) for i in indices)

    def column_at(self, x: int, width: int) -> int | None:
        """The index of the column drawn at cell `x` of a `width`-wide line, if any."""
        position = GUTTER
        for index, cell_width in self(width):
            if position <= x < position + cell_width + 1:
                return index
            position += cell_width + 1
        return None
