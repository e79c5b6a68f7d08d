"""VirtualTable: a keyboard-first table that stays fluid with 10,000 live rows.

Textual's DataTable rebuilds too much per update for a 4 Hz stream with 10 % churn, so this
follows Toolong instead: a `ScrollView` whose `render_line` draws only the lines on screen,
from an LRU cache of Strips keyed by row id + row version + cursor/mark state + width.

The widget is a thin shell over plain collaborators, each testable on its own:
- `table_model.TableModel`: the rows, their cached cells and sort values, sort, filter, marks
  and the cursor by row id; diff updates (`apply`) re-render only rows on screen;
- `table_layout.ColumnLayout`: which columns fit a width, and how wide each is drawn;
- `table_render.TableRenderer`: the header and row lines, with the line cache;
- `table_viewport.TableViewport`: which row is on which line, and which lines to repaint.

An update that changes nothing repaints nothing. The cursor stays on its row id, and the
scroll offset stays put, whatever the updates do; only the user's own cursor movement (and a
sort or filter they ask for) scrolls, to keep the cursor in view.

Cells are `str` or `rich.text.Text`, never markup: names, ids and errors from the wire are
shown literally (control characters become U+FFFD so they cannot break a line).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import ClassVar, Generic, TypeVar

from textual import events, on
from textual.binding import Binding, BindingType
from textual.geometry import Region
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from gatewaytui.tui.widgets.table_layout import ColumnLayout
from gatewaytui.tui.widgets.table_model import (
    Cell,
    Column,
    Row,
    TableModel,
    TableRow,
    clean_text,
    compile_filter,
    natural_key,
)
from gatewaytui.tui.widgets.table_render import TableRenderer
from gatewaytui.tui.widgets.table_viewport import TableViewport

__all__ = ["Cell", "Column", "VirtualTable", "clean_text", "natural_key"]

SORT_HELP = "sort by the next column / reverse"
_T = TypeVar("_T")


class _ReadOnly(Generic[_T]):
    """A read-only attribute of the table, read from its collaborators on each access.

    The table's public state lives in its model and renderer; this forwards it without a
    property method apiece in the widget."""

    def __init__(self, read: Callable[[VirtualTable], _T], doc: str = "") -> None:
        self.read = read
        self.__doc__ = doc

    def __get__(self, table: VirtualTable, owner: type | None = None) -> _T:
        return self.read(table)


class VirtualTable(ScrollView, can_focus=True):
    """A virtual, diff-updated, sortable and filterable table of keyed rows.

    Feed it with `set_rows` (full load) and `apply` (diff), call `tick` on a clock for
    `ticking` columns, `set_filter` from the app's filter input. It posts `CursorMoved`,
    `RowSelected` (enter / double click) and `MarksChanged` (space).
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor_up", "Up", show=False, id="table.cursor_up"),
        Binding("down,j", "cursor_down", "Down", show=False, id="table.cursor_down"),
        Binding("pageup", "jump('page_up')", "Page up", show=False, id="table.page_up"),
        Binding("pagedown", "jump('page_down')", "Page down", show=False, id="table.page_down"),
        Binding("home,g", "jump('first')", "First", show=False, id="table.first"),
        Binding("end,G", "jump('last')", "Last", show=False, id="table.last"),
        Binding(
            "space",
            "toggle_mark",
            "Mark",
            id="table.mark",
            tooltip="workers: mark rows (bulk drain / re-add)",
        ),
        Binding(
            "enter",
            "select",
            "Open",
            id="table.select",
            tooltip="open: worker, job or event details, backend form",
        ),
        Binding("o", "cycle_sort", "Sort", id="table.sort", tooltip=SORT_HELP),
        Binding("O", "reverse_sort", "Reverse", id="table.reverse", tooltip=SORT_HELP),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "virtual-table--header",
        "virtual-table--sort-column",
        "virtual-table--cursor",
        "virtual-table--marked",
        "virtual-table--empty",
    }

    DEFAULT_CSS = """
    VirtualTable {
        height: 1fr;
        background: $surface;
        color: $foreground;
        overflow-x: hidden;
        overflow-y: auto;
        scrollbar-size-vertical: 1;
        &:focus {
            background-tint: $foreground 5%;
            & > .virtual-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
        }
        & > .virtual-table--header {
            background: $panel;
            color: $foreground;
            text-style: bold;
        }
        & > .virtual-table--sort-column {
            color: $accent;
        }
        & > .virtual-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        & > .virtual-table--marked {
            background: $secondary-muted;
            text-style: bold;
        }
        & > .virtual-table--empty {
            color: $text-muted;
            text-style: italic;
        }
    }
    """

    class RowSelected(Message):
        """Enter (or a double click) on a row: the app opens its details."""

        def __init__(self, table: VirtualTable, row_id: str) -> None:
            super().__init__()
            self.table = table
            self.row_id = row_id

        @property
        def control(self) -> VirtualTable:
            return self.table

    class CursorMoved(Message):
        """The cursor is on another row (or on none, when the table emptied).

        `by_user`: the user moved it (keys, click), not an update or `move_cursor_to`.
        """

        def __init__(self, table: VirtualTable, row_id: str | None, by_user: bool = False) -> None:
            super().__init__()
            self.table = table
            self.row_id = row_id
            self.by_user = by_user

        @property
        def control(self) -> VirtualTable:
            return self.table

    class MarksChanged(Message):
        """The set of marked rows changed (space, `clear_marks`, or marked rows removed)."""

        def __init__(self, table: VirtualTable, marked: frozenset[str]) -> None:
            super().__init__()
            self.table = table
            self.marked = marked

        @property
        def control(self) -> VirtualTable:
            return self.table

    def __init__(
        self,
        columns: Sequence[Column],
        *,
        empty_text: str = "no rows",
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
        disabled: bool = False,
        markable: bool = True,
        selectable: bool = True,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        self.markable = markable
        """Space marks rows; False hides `Mark` from the footer and leaves space unbound."""
        self.selectable = selectable
        """Enter posts `RowSelected`; False hides `Open` where enter would open nothing."""
        self._model = TableModel(columns, warn=lambda message: self.log.warning(message))
        self.empty_text = empty_text
        self._layout = ColumnLayout(self._model.columns)
        self._renderer = TableRenderer(
            self._model,
            self._layout,
            lambda name, partial: self.get_component_rich_style(name, partial=partial),
            lambda: self.rich_style,
            lambda: self.app.console,
        )
        self._viewport = TableViewport(self, self._model)

    # ------------------------------------------------------------------ public state

    columns = _ReadOnly(lambda table: table._model.columns)
    cursor_id = _ReadOnly(
        lambda table: table._model.cursor_id,
        "Id of the row under the cursor, or None when no row is visible.",
    )
    marked = _ReadOnly(
        lambda table: frozenset(table._model.marked),
        "Marked row ids, including marked rows the filter currently hides.",
    )
    visible_count = _ReadOnly(lambda table: len(table._model.visible))
    total_count = _ReadOnly(lambda table: len(table._model.rows))
    visible_ids = _ReadOnly(
        lambda table: tuple(table._model.visible), "The ids in display order (a copy; O(rows))."
    )
    sort_column = _ReadOnly(lambda table: table._model.sort_key)
    sort_reverse = _ReadOnly(lambda table: table._model.sort_reverse)
    filter_pattern = _ReadOnly(lambda table: table._model.filter_pattern)
    line_cache_misses = _ReadOnly(
        lambda table: table._renderer.misses,
        "Row strips rendered (not found in the line cache): for tests and benchmarks.",
    )

    get_row: _ReadOnly[Callable[[str], Row | None]] = _ReadOnly(
        lambda table: table._model.get_row,
        "get_row(row_id): the row mapping last given for `row_id` (None if unknown).",
    )

    # ------------------------------------------------------------------ data in

    def set_rows(self, rows: Mapping[str, Row]) -> None:
        """Load the whole set (first load, or a resync snapshot); cursor and marks survive."""
        self._update(rows, list(rows), self._model.rows.keys() - rows.keys(), reload=True)

    def apply(
        self, rows: Mapping[str, Row], changed: Iterable[str], removed: Iterable[str]
    ) -> None:
        """Diff update. `rows` is the full current mapping; `changed` the ids added or modified.

        Ids in `changed` that are not in `rows` are treated as removed. If the ids still disagree
        afterwards (a missed add or remove), the table reconciles them with `rows`.
        """
        self._update(rows, changed, removed, reload=False)

    def tick(self) -> None:
        """Re-render the `ticking` cells of on-screen rows; repaint only lines whose text changed.

        Off-screen rows are brought up to date lazily when they are drawn.
        """
        model = self._model
        if not model.ticking:
            return
        model.tick_epoch += 1
        width = self._viewport.width()
        regions = [
            Region(0, y, width, 1)
            for y, row_id in self._viewport.rows()
            if self._retick(model.rows[row_id])
        ]
        if regions:
            self.refresh(*regions)

    # ------------------------------------------------------------------ sort and filter

    def sort_by(self, key: str | None, reverse: bool = False) -> None:
        """Sort by column `key` (None: arrival order); the cursor keeps its row and stays shown."""
        if self._model.sort_by(key, reverse):
            self._after_user_reorder()

    def hide_columns(self, keys: Iterable[str]) -> None:
        """Leave the columns `keys` out of the table (none: show them all again). Hidden
        columns still render into the filter's text and can still sort the rows."""
        hidden = frozenset(self._model.column_index[key] for key in keys)
        if self._layout.hide(hidden):
            self._renderer.clear()
            self.refresh()

    def cycle_sort(self) -> None:
        """Sort by the next on-screen column (ascending), wrapping round."""
        shown = [index for index, _ in self._layout(self._viewport.width())]
        self.sort_by(self._model.next_sort_column(shown), False)

    def reverse_sort(self) -> None:
        """Flip the direction of the current sort (sorts by the first column if unsorted)."""
        model = self._model
        if model.sort_column is None:
            self.sort_by(model.columns[0].key, True)
        else:
            self.sort_by(model.columns[model.sort_column].key, not model.sort_reverse)

    def set_filter(self, pattern: str | None) -> str | None:
        """Show only rows whose cells match the regex; None or "" shows all.

        Smart case (case-insensitive unless the pattern has an upper-case letter); cells are
        joined by newlines with MULTILINE on, so `^idle$` matches a whole cell. Returns an error
        message for a bad regex, in which case the previous filter stays.
        """
        try:
            compiled = compile_filter(pattern)
        except re.error as exc:
            return f"bad regex: {exc}"
        if self._model.set_filter(compiled):
            self._after_user_reorder()
        return None

    # ------------------------------------------------------------------ cursor and marks

    def move_cursor_to(self, row_id: str, *, scroll: bool = True) -> bool:
        """Put the cursor on `row_id` if it is visible; returns whether it is."""
        position = self._model.index.get(row_id)
        if position is None:
            return False
        self._move_cursor(position, scroll=scroll)
        return True

    def move_cursor_to_end(self) -> None:
        """Cursor to the last row, scrolled into view (for "follow" views such as Events)."""
        if self._model.visible:
            self._move_cursor(len(self._model.visible) - 1)

    def toggle_mark(self, row_id: str | None = None) -> None:
        """Mark or unmark `row_id` (default: the cursor row)."""
        model = self._model
        row_id = model.cursor_id if row_id is None else row_id
        if row_id is None or not model.toggle_mark(row_id):
            return
        self._viewport.refresh_row(row_id)
        self.post_message(self.MarksChanged(self, frozenset(model.marked)))

    def clear_marks(self) -> None:
        model = self._model
        if not model.marked:
            return
        previous, model.marked = model.marked, set()
        for row_id in previous:
            self._viewport.refresh_row(row_id)
        self.post_message(self.MarksChanged(self, frozenset()))

    # ------------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`Mark` and `Open` show (and their keys bind) only where they do something."""
        if action == "toggle_mark":
            return self.markable
        if action == "select":
            return self.selectable
        return True

    def action_cursor_up(self) -> None:
        self._move_cursor(self._model.cursor_pos - 1, user=True)

    def action_cursor_down(self) -> None:
        self._move_cursor(self._model.cursor_pos + 1, user=True)

    def action_jump(self, where: str) -> None:
        """The cursor's long moves: `page_up`, `page_down`, `first` or `last`."""
        position = self._model.cursor_pos
        if where == "page_up":
            page = self._viewport.page_height()
            self.scroll_to(y=max(0, self.scroll_offset.y - page), animate=False)
            position -= page
        elif where == "page_down":
            page = self._viewport.page_height()
            self.scroll_to(y=self.scroll_offset.y + page, animate=False)
            position += page
        else:
            position = 0 if where == "first" else len(self._model.visible) - 1
        self._move_cursor(position, user=True)

    def action_toggle_mark(self) -> None:
        """Space: mark the cursor row and step down, so a run of rows is marked quickly."""
        self.toggle_mark()
        self._move_cursor(self._model.cursor_pos + 1, user=True)

    def action_select(self) -> None:
        if self._model.cursor_id is not None:
            self.post_message(self.RowSelected(self, self._model.cursor_id))

    def action_cycle_sort(self) -> None:
        self.cycle_sort()

    def action_reverse_sort(self) -> None:
        self.reverse_sort()

    # ------------------------------------------------------------------ events

    async def _on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        model = self._model
        if offset.y == 0:
            column = self._layout.column_at(offset.x, self._viewport.width())
            if column is not None:
                same = column == model.sort_column
                self.sort_by(model.columns[column].key, not model.sort_reverse if same else False)
            return
        position = self.scroll_offset.y + offset.y - 1
        if 0 <= position < len(model.visible):
            self._move_cursor(position, user=True)
            if event.chain >= 2:
                self.action_select()

    def restyle_rows(self) -> None:
        """The styles the columns draw with have changed (a new theme): every row renders
        afresh when next drawn (rows off screen stay stale until then, as after an update)."""
        self._model.restyle()
        self._restyle()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._renderer.clear()

    @on(events.Focus)
    @on(events.Blur)
    def _restyle(self) -> None:
        """Focus changes the cursor style: drop cached strips and repaint the viewport."""
        self._renderer.clear()
        self.refresh()

    # ------------------------------------------------------------------ rendering

    def render_line(self, y: int) -> Strip:
        width = self._viewport.width()
        renderer = self._renderer
        if y == 0:
            return renderer.header(width)
        model = self._model
        visible = model.visible
        index = self.scroll_offset.y + y - 1
        if not 0 <= index < len(visible):
            if y == 1 and not visible:
                return renderer.empty(width, self.empty_text)
            return Strip.blank(width, self.rich_style)
        row_id = visible[index]
        row = model.rows[row_id]
        if row.cells is None:
            model.cells(row)
        elif model.ticking and row.tick_epoch != model.tick_epoch:
            self._retick(row)
        return renderer.row_line(
            row_id, row, width, row_id == model.cursor_id, row_id in model.marked
        )

    # ------------------------------------------------------------------ internals

    def _retick(self, row: TableRow) -> bool:
        """Re-render the row's clock-driven cells (a seam the panel benchmark instruments)."""
        return self._model.retick(row)

    def _update(
        self,
        rows: Mapping[str, Row],
        changed: Iterable[str],
        removed: Iterable[str],
        *,
        reload: bool,
    ) -> None:
        viewport = self._viewport
        model = self._model
        before = viewport.keys()
        marks_before = len(model.marked)
        on_screen = viewport.row_ids(before)
        if model.update(rows, changed, removed, on_screen=on_screen, reload=reload):
            viewport.sync_height()
            if model.fix_cursor():  # its row went: the cursor is on a neighbour (or none)
                self.post_message(self.CursorMoved(self, model.cursor_id))
        if len(model.marked) != marks_before:
            self.post_message(self.MarksChanged(self, frozenset(model.marked)))
        viewport.repaint_changed(before)

    def _move_cursor(self, position: int, *, scroll: bool = True, user: bool = False) -> None:
        """Move the cursor (`user`: by a key or a click): clamp, repaint the two lines, scroll
        only if needed."""
        model = self._model
        if not model.visible:
            return
        previous = model.place_cursor(position)
        if model.cursor_id != previous:
            if previous is not None:
                self._viewport.refresh_row(previous)
            assert model.cursor_id is not None
            self._viewport.refresh_row(model.cursor_id)
            self.post_message(self.CursorMoved(self, model.cursor_id, user))
        if scroll:
            self._viewport.scroll_to_cursor()

    def _after_user_reorder(self) -> None:
        """After a sort or filter the user asked for: cursor on its row, shown, all repainted."""
        self._viewport.sync_height()
        if self._model.fix_cursor():
            self.post_message(self.CursorMoved(self, self._model.cursor_id))
        self._viewport.scroll_to_cursor()
        self.refresh()
