"""The part of a VirtualTable on screen: which row is on which line, and what to repaint.

The header is line 0 of the viewport (sticky); row `i` of the visible order is virtual line
`i + 1`. Only the lines whose content changed are repainted: `keys()` says what each
on-screen line shows, and `repaint_changed` compares that with a snapshot from before.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from textual.geometry import Region, Size
from textual.scroll_view import ScrollView

from gatewaytui.tui.widgets.table_model import TableModel

__all__ = ["TableViewport"]

_NO_ROWS = object()  # viewport key of the "no rows" line


class TableViewport:
    """Maps the model's visible rows onto the lines of a scrolling widget."""

    def __init__(self, widget: ScrollView, model: TableModel) -> None:
        self.widget = widget
        self.model = model

    def width(self) -> int:
        return self.widget.scrollable_content_region.width

    def page_height(self) -> int:
        """Rows that fit under the header."""
        return max(1, self.widget.scrollable_content_region.height - 1)

    def rows(self) -> Iterator[tuple[int, str]]:
        """(viewport line, row id) for every row line on screen."""
        visible = self.model.visible
        top = self.widget.scroll_offset.y
        for y in range(1, self.widget.scrollable_content_region.height):
            index = top + y - 1
            if index >= len(visible):
                return
            yield y, visible[index]

    def row_ids(self, keys: list[Any]) -> set[str]:
        """The ids of the rows on screen, from a `keys()` snapshot."""
        return {key[0] for key in keys if key[0] is not _NO_ROWS}

    def keys(self) -> list[Any]:
        """What each on-screen row line shows, to repaint only the lines that differ."""
        if self.widget.scrollable_content_region.height <= 1:
            return []
        model = self.model
        if not model.visible:
            return [(_NO_ROWS, bool(model.rows))]
        rows = model.rows
        cursor = model.cursor_id
        marked = model.marked
        return [
            (row_id, rows[row_id].version, row_id == cursor, row_id in marked)
            for _, row_id in self.rows()
        ]

    def repaint_changed(self, before: list[Any]) -> None:
        after = self.keys()
        if before == after:
            return
        width = self.width()
        regions = [
            Region(0, y, width, 1)
            for y in range(1, max(len(before), len(after)) + 1)
            if y > len(before) or y > len(after) or before[y - 1] != after[y - 1]
        ]
        self.widget.refresh(*regions)

    def refresh_row(self, row_id: str) -> None:
        position = self.model.index.get(row_id)
        if position is None:
            return
        widget = self.widget
        y = position - widget.scroll_offset.y + 1
        if 1 <= y < widget.scrollable_content_region.height:
            widget.refresh(Region(0, y, self.width(), 1))

    def scroll_to_cursor(self) -> None:
        top = self.widget.scroll_offset.y
        page = self.page_height()
        position = self.model.cursor_pos
        if position < top:
            self.widget.scroll_to(y=position, animate=False)
        elif position >= top + page:
            self.widget.scroll_to(y=position - page + 1, animate=False)

    def sync_height(self) -> None:
        """The virtual height after the visible rows changed: one line per row + the header."""
        widget = self.widget
        height = len(self.model.visible) + 1
        if widget.virtual_size.height != height:
            size = Size(0, height)
            styled_height = widget.styles.height
            if widget.is_mounted and not (styled_height is not None and styled_height.is_auto):
                # Only the scrollbar depends on the row count: update it without the
                # full-screen relayout that assigning the (layout=True) reactive would cost on
                # every tick. A scrollbar appearing or going still relayouts, by itself.
                widget.set_reactive(ScrollView.virtual_size, size)
                widget._scroll_update(size)
            else:
                widget.virtual_size = size
