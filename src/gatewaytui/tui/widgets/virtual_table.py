"""VirtualTable: a keyboard-first table that stays fluid with 10,000 live rows.

Textual's DataTable rebuilds too much per update for a 4 Hz stream with 10 % churn, so this
follows Toolong instead: a `ScrollView` whose `render_line` draws only the lines on screen,
from an LRU cache of Strips keyed by row id + row version + cursor/mark state + width.

Updates are diffs (`apply`): a changed row's sort value is recomputed once and cached; its
cells are re-rendered at once only if it is on screen (or a filter needs its text), otherwise
when it is next drawn; the order is re-sorted with the cached values (Timsort on a
nearly-sorted list is close to linear); and only the viewport lines whose content actually
changed are repainted. An update that changes nothing repaints nothing. The cursor stays on
its row id, and the scroll offset stays put, whatever the updates do; only the user's own
cursor movement (and a sort or filter they ask for) scrolls, to keep the cursor in view.

Cells are `str` or `rich.text.Text`, never markup: names, ids and errors from the wire are
shown literally (control characters become U+FFFD so they cannot break a line).

The header is line 0 of the viewport (sticky); row `i` of the visible order is virtual line
`i + 1`. Columns have a preferred width, a minimum and a priority: when the widget is narrow,
the highest-priority-number columns are dropped first, and the `flex` column absorbs any
spare width, so the table fits 80 columns without horizontal scrolling.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, Literal

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

__all__ = ["Cell", "Column", "VirtualTable", "clean_text", "natural_key"]

Cell = str | Text
"""What a column renders for a row: plain text (shown literally) or a styled `Text`."""
Row = Mapping[str, Any]
Align = Literal["left", "right", "center"]

GUTTER = 2
"""Leading columns of every line: the mark glyph and a space."""
MARK_GLYPH = "✓"
SORT_ASCENDING = "▲"
SORT_DESCENDING = "▼"
SORT_HELP = "sort by the next column / reverse"
_REPLACEMENT = "\ufffd"
_CONTROL_CHARS = dict.fromkeys([*range(0x20), 0x7F, *range(0x80, 0xA0)], _REPLACEMENT)
_ESCAPE = re.compile(r"\\.")
_NO_ROWS = object()  # viewport key of the "no rows" line
_DIGITS = re.compile(r"(\d+)")


@lru_cache(maxsize=65536)
def natural_key(text: str) -> tuple[str | int, ...]:
    """Case-folded text with digit runs compared as numbers: "gpu-2" sorts before "gpu-10".

    Splitting on a capturing group alternates text and digits, so tuples compare str with str
    and int with int, never across types. A digit run too long for int() (a hostile name)
    falls back to the plain text, which still compares with the others at position 0 only.
    """
    folded = text.casefold()
    parts = _DIGITS.split(folded)
    if len(parts) == 1:
        return (folded,)
    try:
        return tuple(int(part) if n % 2 else part for n, part in enumerate(parts))
    except ValueError:
        return (folded,)


def clean_text(text: str) -> str:
    """Replace control characters so a wire string can never break or restyle a line."""
    return text if text.isprintable() else text.translate(_CONTROL_CHARS)


@dataclass(frozen=True, slots=True)
class Column:
    """One column: how to render, sort and size it.

    `render` gets the row mapping and returns the cell (`str` or `Text`; other values are
    shown with `str()`); it should be cheap and pure, as it runs for every changed row on
    screen. `sort_key` defaults to the cell's plain text in natural order (case-folded, digit
    runs as numbers: see `natural_key`); give one for numbers and times. A sort value of None
    sorts last in both directions. `min_width` defaults to `width`; the `flex` column(s) take
    spare width. Higher `priority` numbers are dropped first when the table is too narrow.
    `ticking` cells depend on the clock (ages): `VirtualTable.tick()` re-renders them, and they
    are left out of the filter haystack so rows do not blink in and out of a filter as time
    passes (give them a `sort_key` on the underlying timestamp).
    """

    key: str
    label: str
    render: Callable[[Row], Any]
    sort_key: Callable[[Row], Any] | None = None
    width: int = 10
    min_width: int | None = None
    flex: bool = False
    align: Align = "left"
    priority: int = 0
    ticking: bool = False

    def __post_init__(self) -> None:
        if self.width < 1 or (self.min_width is not None and self.min_width < 1):
            raise ValueError(f"column {self.key!r}: widths must be >= 1")

    @property
    def minimum(self) -> int:
        """The narrowest this column may be drawn before it is dropped instead."""
        return min(self.width, self.min_width) if self.min_width is not None else self.width


class _Row:
    """Per-row caches: rendered cells, filter haystack, version (bumped when the look changes).

    `cells` is None while the row is stale and off screen: an update only re-renders the cells
    of rows on screen (or all of them while a filter needs their text); the others render when
    they are next drawn or searched. The haystack is likewise built on first use.
    """

    __slots__ = ("cells", "data", "haystack", "tick_epoch", "version")

    def __init__(self, data: Row, cells: list[Cell] | None, tick_epoch: int) -> None:
        self.data = data
        self.cells = cells
        self.haystack: str | None = None
        self.version = 0
        self.tick_epoch = tick_epoch


def _cells_equal(a: list[Cell], b: list[Cell]) -> bool:
    """Equal text, spans *and* base style (Text.__eq__ ignores `style`)."""
    if a != b:
        return False
    for x, y in zip(a, b, strict=True):
        if x.__class__ is not str and x.style != y.style:  # type: ignore[union-attr]
            return False
    return True


def _plain(cell: Cell) -> str:
    return cell if cell.__class__ is str else cell.plain  # type: ignore[union-attr]


def _fit(text: str, width: int, align: Align) -> str:
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


class _RowUpdate:
    """One update of a table's rows: drop the removed, add or refresh the rest, keeping the
    sort values, the filter's hidden set and the marks in step. Collects what came and went."""

    __slots__ = (
        "added", "epoch", "filtering", "gone", "haystack_of", "hidden", "keys", "marked",
        "nones", "on_screen", "render_cells", "search", "sort_value", "store",
    )  # fmt: skip

    def __init__(self, table: VirtualTable, on_screen: set[str]) -> None:
        self.store = table._rows
        self.keys = table._keys
        self.nones = table._nones
        self.hidden = table._hidden
        self.marked = table._marked
        self.search = None if table._filter is None else table._filter.search
        column = table._sort_column
        self.sort_value = None if column is None else table._sort_value_function(column)
        self.render_cells = table._render_cells
        self.haystack_of = table._haystack
        self.epoch = table._tick_epoch
        self.on_screen = on_screen
        self.filtering = self.search is not None
        self.gone: set[str] = set()
        self.added: list[str] = []

    def apply(
        self, rows: Mapping[str, Row], changed: Iterable[str], removed: Iterable[str]
    ) -> bool:
        """Returns whether some row's position or membership may have changed."""
        structural = False
        for row_id in removed:
            self.drop(row_id)
        for row_id in changed:
            data = rows.get(row_id)
            if data is None:
                self.drop(row_id)
            elif self.upsert(row_id, data):
                structural = True
        store = self.store
        if store.keys() != rows.keys():  # the caller missed an add or a remove: reconcile
            for row_id in store.keys() - rows.keys():
                self.drop(row_id)
            for row_id in rows.keys() - store.keys():
                self.upsert(row_id, rows[row_id])
        return structural

    def drop(self, row_id: str) -> None:
        if self.store.pop(row_id, None) is not None:
            self.gone.add(row_id)
            self.keys.pop(row_id, None)
            self.nones.discard(row_id)
            self.hidden.discard(row_id)
            self.marked.discard(row_id)

    def upsert(self, row_id: str, data: Row) -> bool:
        """Returns whether the row's position or membership may have changed."""
        row = self.store.get(row_id)
        if row is None:
            self._insert(row_id, data)
            return True
        row.data = data
        moved = self._refresh(row_id, row)
        row.tick_epoch = self.epoch
        if self.sort_value is not None and self._revalue(row_id, row):
            moved = True
        return moved

    def _insert(self, row_id: str, data: Row) -> None:
        cells = self.render_cells(data) if self.filtering else None
        row = self.store[row_id] = _Row(data, cells, self.epoch)
        self.added.append(row_id)
        if self.sort_value is not None:
            value = self.keys[row_id] = self.sort_value(row)
            if value is None:
                self.nones.add(row_id)
        if self.search is not None and self.search(self.haystack_of(row)) is None:
            self.hidden.add(row_id)

    def _refresh(self, row_id: str, row: _Row) -> bool:
        """New cells (on screen, or all while filtering); True if it entered or left the
        filter's matches."""
        if row_id in self.on_screen:
            cells = self.render_cells(row.data)
            looks_changed = row.cells is None or not _cells_equal(cells, row.cells)
            row.cells = cells
        else:
            row.cells = self.render_cells(row.data) if self.filtering else None
            looks_changed = True
        if not looks_changed:
            return False
        row.version += 1
        row.haystack = None
        if self.search is None:
            return False
        out = self.search(self.haystack_of(row)) is None
        if out == (row_id in self.hidden):
            return False
        if out:
            self.hidden.add(row_id)
        else:
            self.hidden.discard(row_id)
        return True

    def _revalue(self, row_id: str, row: _Row) -> bool:
        """The row's sort value again; True if it changed."""
        assert self.sort_value is not None
        value = self.sort_value(row)
        if value == self.keys[row_id]:
            return False
        self.keys[row_id] = value
        if value is None:
            self.nones.add(row_id)
        else:
            self.nones.discard(row_id)
        return True


class VirtualTable(ScrollView, can_focus=True):
    """A virtual, diff-updated, sortable and filterable table of keyed rows.

    Feed it with `set_rows` (full load) and `apply` (diff), call `tick` on a clock for
    `ticking` columns, `set_filter` from the app's filter input. It posts `CursorMoved`,
    `RowSelected` (enter / double click) and `MarksChanged` (space).
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor_up", "Up", show=False, id="table.cursor_up"),
        Binding("down,j", "cursor_down", "Down", show=False, id="table.cursor_down"),
        Binding("pageup", "page_up", "Page up", show=False, id="table.page_up"),
        Binding("pagedown", "page_down", "Page down", show=False, id="table.page_down"),
        Binding("home,g", "first", "First", show=False, id="table.first"),
        Binding("end,G", "last", "Last", show=False, id="table.last"),
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
        if not columns:
            raise ValueError("a VirtualTable needs at least one column")
        self._columns: tuple[Column, ...] = tuple(columns)
        self._column_index = {column.key: i for i, column in enumerate(self._columns)}
        if len(self._column_index) != len(self._columns):
            raise ValueError("column keys must be unique")
        self._ticking = tuple(i for i, c in enumerate(self._columns) if c.ticking)
        self._searchable = tuple(i for i, c in enumerate(self._columns) if not c.ticking)
        self.empty_text = empty_text

        self._rows: dict[str, _Row] = {}
        self._order: list[str] = []  # every id, sorted (or in arrival order when unsorted)
        self._visible: list[str] = []  # `_order` minus the filtered-out ids
        self._index: dict[str, int] = {}  # id -> position in `_visible`
        self._keys: dict[str, Any] = {}  # id -> cached sort value (None sorts last)
        self._nones: set[str] = set()  # ids whose sort value is None
        self._renderers = tuple(column.render for column in self._columns)
        self._hidden: set[str] = set()  # ids the filter rejects
        self._marked: set[str] = set()
        self._sort_column: int | None = None
        self._sort_reverse = False
        self._filter: re.Pattern[str] | None = None
        self._cursor_id: str | None = None
        self._cursor_pos = 0
        self._tick_epoch = 0
        self._line_cache: LRUCache[tuple[Any, ...], Strip] = LRUCache(2048)
        self._layouts: dict[int, tuple[tuple[int, int], ...]] = {}
        self.line_cache_misses = 0
        """Row strips rendered (not found in the line cache): for tests and benchmarks."""

    # ------------------------------------------------------------------ public state

    @property
    def columns(self) -> tuple[Column, ...]:
        return self._columns

    @property
    def cursor_id(self) -> str | None:
        """Id of the row under the cursor, or None when no row is visible."""
        return self._cursor_id

    @property
    def marked(self) -> frozenset[str]:
        """Marked row ids, including marked rows the filter currently hides."""
        return frozenset(self._marked)

    @property
    def visible_count(self) -> int:
        return len(self._visible)

    @property
    def total_count(self) -> int:
        return len(self._rows)

    @property
    def visible_ids(self) -> tuple[str, ...]:
        """The ids in display order (a copy; O(rows))."""
        return tuple(self._visible)

    @property
    def sort_column(self) -> str | None:
        return None if self._sort_column is None else self._columns[self._sort_column].key

    @property
    def sort_reverse(self) -> bool:
        return self._sort_reverse

    @property
    def filter_pattern(self) -> str | None:
        return None if self._filter is None else self._filter.pattern

    def get_row(self, row_id: str) -> Row | None:
        """The row mapping last given for `row_id` (None if unknown)."""
        row = self._rows.get(row_id)
        return None if row is None else row.data

    # ------------------------------------------------------------------ data in

    def set_rows(self, rows: Mapping[str, Row]) -> None:
        """Load the whole set (first load, or a resync snapshot); cursor and marks survive."""
        self._update(rows, list(rows), self._rows.keys() - rows.keys(), reload=True)

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
        if not self._ticking:
            return
        self._tick_epoch += 1
        width = self._render_width()
        regions = [
            Region(0, y, width, 1)
            for y, row_id in self._viewport_rows()
            if self._retick(self._rows[row_id])
        ]
        if regions:
            self.refresh(*regions)

    # ------------------------------------------------------------------ sort and filter

    def sort_by(self, key: str | None, reverse: bool = False) -> None:
        """Sort by column `key` (None: arrival order); the cursor keeps its row and stays shown."""
        if key is not None and key not in self._column_index:
            raise ValueError(f"no column {key!r}")
        column = None if key is None else self._column_index[key]
        previous = self._sort_column
        if column == previous and reverse == self._sort_reverse:
            return
        self._sort_column = column
        self._sort_reverse = reverse
        if column is None:
            self._keys, self._nones = {}, set()
            self._order = list(self._rows)  # first-seen order
        else:
            if column != previous:
                sort_value = self._sort_value_function(column)
                self._keys = {row_id: sort_value(row) for row_id, row in self._rows.items()}
                self._nones = {row_id for row_id, value in self._keys.items() if value is None}
            self._resort()
        self._rebuild_visible()
        self._after_user_reorder()

    def cycle_sort(self) -> None:
        """Sort by the next on-screen column (ascending), wrapping round."""
        shown = [index for index, _ in self._layout(self._render_width())] or list(
            range(len(self._columns))
        )
        current = self._sort_column
        following = [index for index in shown if current is None or index > current]
        column = following[0] if following else shown[0]
        self.sort_by(self._columns[column].key, False)

    def reverse_sort(self) -> None:
        """Flip the direction of the current sort (sorts by the first column if unsorted)."""
        if self._sort_column is None:
            self.sort_by(self._columns[0].key, True)
        else:
            self.sort_by(self._columns[self._sort_column].key, not self._sort_reverse)

    def set_filter(self, pattern: str | None) -> str | None:
        """Show only rows whose cells match the regex; None or "" shows all.

        Smart case (case-insensitive unless the pattern has an upper-case letter); cells are
        joined by newlines with MULTILINE on, so `^idle$` matches a whole cell. Returns an error
        message for a bad regex, in which case the previous filter stays.
        """
        if pattern:
            flags = re.MULTILINE
            if not any(char.isupper() for char in _ESCAPE.sub("", pattern)):
                flags |= re.IGNORECASE
            try:
                compiled: re.Pattern[str] | None = re.compile(pattern, flags)
            except re.error as exc:
                return f"bad regex: {exc}"
        else:
            compiled = None
        if compiled == self._filter:
            return None
        self._filter = compiled
        if compiled is None:
            self._hidden = set()
        else:
            search = compiled.search
            haystack = self._haystack
            self._hidden = {
                row_id for row_id, row in self._rows.items() if search(haystack(row)) is None
            }
        self._rebuild_visible()
        self._after_user_reorder()
        return None

    # ------------------------------------------------------------------ cursor and marks

    def move_cursor_to(self, row_id: str, *, scroll: bool = True) -> bool:
        """Put the cursor on `row_id` if it is visible; returns whether it is."""
        position = self._index.get(row_id)
        if position is None:
            return False
        self._move_cursor(position, scroll=scroll)
        return True

    def move_cursor_to_end(self) -> None:
        """Cursor to the last row, scrolled into view (for "follow" views such as Events)."""
        if self._visible:
            self._move_cursor(len(self._visible) - 1)

    def toggle_mark(self, row_id: str | None = None) -> None:
        """Mark or unmark `row_id` (default: the cursor row)."""
        row_id = self._cursor_id if row_id is None else row_id
        if row_id is None or row_id not in self._rows:
            return
        if row_id in self._marked:
            self._marked.discard(row_id)
        else:
            self._marked.add(row_id)
        self._refresh_row(row_id)
        self.post_message(self.MarksChanged(self, frozenset(self._marked)))

    def clear_marks(self) -> None:
        if not self._marked:
            return
        previous, self._marked = self._marked, set()
        for row_id in previous:
            self._refresh_row(row_id)
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
        self._move_cursor(self._cursor_pos - 1, user=True)

    def action_cursor_down(self) -> None:
        self._move_cursor(self._cursor_pos + 1, user=True)

    def action_page_up(self) -> None:
        page = self._page_height()
        self.scroll_to(y=max(0, self.scroll_offset.y - page), animate=False)
        self._move_cursor(self._cursor_pos - page, user=True)

    def action_page_down(self) -> None:
        page = self._page_height()
        self.scroll_to(y=self.scroll_offset.y + page, animate=False)
        self._move_cursor(self._cursor_pos + page, user=True)

    def action_first(self) -> None:
        self._move_cursor(0, user=True)

    def action_last(self) -> None:
        self._move_cursor(len(self._visible) - 1, user=True)

    def action_toggle_mark(self) -> None:
        """Space: mark the cursor row and step down, so a run of rows is marked quickly."""
        self.toggle_mark()
        self._move_cursor(self._cursor_pos + 1, user=True)

    def action_select(self) -> None:
        if self._cursor_id is not None:
            self.post_message(self.RowSelected(self, self._cursor_id))

    def action_cycle_sort(self) -> None:
        self.cycle_sort()

    def action_reverse_sort(self) -> None:
        self.reverse_sort()

    # ------------------------------------------------------------------ events

    async def _on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:
            column = self._column_at(offset.x)
            if column is not None:
                key = self._columns[column].key
                same = column == self._sort_column
                self.sort_by(key, not self._sort_reverse if same else False)
            return
        position = self.scroll_offset.y + offset.y - 1
        if 0 <= position < len(self._visible):
            self._move_cursor(position, user=True)
            if event.chain >= 2:
                self.action_select()

    def _on_focus(self, event: events.Focus) -> None:
        self._restyle()

    def _on_blur(self, event: events.Blur) -> None:
        self._restyle()

    def restyle_rows(self) -> None:
        """The styles the columns draw with have changed (a new theme): every row renders
        afresh when next drawn (rows off screen stay stale until then, as after an update)."""
        for row in self._rows.values():
            row.cells = None
            row.version += 1
        self._line_cache.clear()
        self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._line_cache.clear()

    def _restyle(self) -> None:
        """Focus changes the cursor style: drop cached strips and repaint the viewport."""
        self._line_cache.clear()
        self.refresh()

    # ------------------------------------------------------------------ rendering

    def render_line(self, y: int) -> Strip:
        width = self._render_width()
        if y == 0:
            return self._render_header(width)
        visible = self._visible
        index = self.scroll_offset.y + y - 1
        if not 0 <= index < len(visible):
            if y == 1 and not visible:
                return self._render_empty(width)
            return Strip.blank(width, self.rich_style)
        row_id = visible[index]
        row = self._rows[row_id]
        if row.cells is None:
            self._cells(row)
        elif self._ticking and row.tick_epoch != self._tick_epoch:
            self._retick(row)
        cursor = row_id == self._cursor_id
        marked = row_id in self._marked
        key = (row_id, row.version, cursor, marked, width)
        strip = self._line_cache.get(key)
        if strip is None:
            self.line_cache_misses += 1
            strip = self._render_row(row, width, cursor, marked)
            self._line_cache.set(key, strip)
        return strip

    def _render_width(self) -> int:
        return self.scrollable_content_region.width

    def _page_height(self) -> int:
        """Rows that fit under the header."""
        return max(1, self.scrollable_content_region.height - 1)

    def _layout(self, width: int) -> tuple[tuple[int, int], ...]:
        """(column index, width) of the columns shown at `width`, in definition order."""
        layout = self._layouts.get(width)
        if layout is None:
            layout = self._layouts[width] = self._compute_layout(width)
        return layout

    def _compute_layout(self, width: int) -> tuple[tuple[int, int], ...]:
        columns = self._columns
        available = max(1, width - GUTTER)
        shown = set(range(len(columns)))

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

    def _column_at(self, x: int) -> int | None:
        position = GUTTER
        for index, width in self._layout(self._render_width()):
            if position <= x < position + width + 1:
                return index
            position += width + 1
        return None

    def _render_header(self, width: int) -> Strip:
        key = ("header", width, self._sort_column, self._sort_reverse)
        strip = self._line_cache.get(key)
        if strip is not None:
            return strip
        style = self.get_component_rich_style("virtual-table--header")
        sort_style = style + self.get_component_rich_style(
            "virtual-table--sort-column", partial=True
        )
        segments = [Segment(" " * GUTTER, style)]
        for n, (index, cell_width) in enumerate(self._layout(width)):
            column = self._columns[index]
            label = column.label
            if index == self._sort_column:
                arrow = SORT_DESCENDING if self._sort_reverse else SORT_ASCENDING
                length = cell_len(label)
                if length + 2 <= cell_width:
                    label = f"{label} {arrow}"
                else:  # tight: drop the space, then letters, but always show the arrow
                    label = set_cell_size(label, min(length, cell_width - 1)) + arrow
            if n:
                segments.append(Segment(" ", style))
            segments.append(
                Segment(
                    _fit(label, cell_width, column.align),
                    sort_style if index == self._sort_column else style,
                )
            )
        strip = Strip(segments).adjust_cell_length(width, style)
        self._line_cache.set(key, strip)
        return strip

    def _render_empty(self, width: int) -> Strip:
        style = self.get_component_rich_style("virtual-table--empty")
        if self._rows:
            text = f"no rows match /{clean_text(self._filter.pattern if self._filter else '')}/"
        else:
            text = clean_text(self.empty_text)
        return Strip([Segment(_fit(" " * GUTTER + text, width, "left"), style)], width)

    def _cells(self, row: _Row) -> list[Cell]:
        """The row's cells, rendered now if the row went stale while off screen."""
        cells = row.cells
        if cells is None:
            cells = row.cells = self._render_cells(row.data)
            row.tick_epoch = self._tick_epoch
        return cells

    def _render_row(self, row: _Row, width: int, cursor: bool, marked: bool) -> Strip:
        style = self.rich_style
        if marked:
            style += self.get_component_rich_style("virtual-table--marked")
        if cursor:
            style += self.get_component_rich_style("virtual-table--cursor")
        segments = [Segment((MARK_GLYPH if marked else " ") + " ", style)]
        columns = self._columns
        cells = self._cells(row)
        for n, (index, cell_width) in enumerate(self._layout(width)):
            if n:
                segments.append(Segment(" ", style))
            cell = cells[index]
            align = columns[index].align
            if cell.__class__ is str:
                segments.append(Segment(_fit(cell, cell_width, align), style))
            else:
                segments.extend(self._text_segments(cell, cell_width, align, style))  # type: ignore[arg-type]
        # Joined same-style segments: a row costs ~290 bytes on the wire instead of ~1,030.
        return Strip(segments).adjust_cell_length(width, style).simplify()

    def _text_segments(self, text: Text, width: int, align: Align, style: Style) -> list[Segment]:
        console = self.app.console
        if text.cell_len > width:
            text = text.copy()
            text.truncate(width, overflow="ellipsis")
        if text.style:
            style = style + console.get_style(text.style, default=Style.null())
        segments = [
            Segment(segment.text, style + segment.style if segment.style else style)
            for segment in text.render(console)
            if segment.text
        ]
        pad = width - text.cell_len
        if pad > 0:
            if align == "right":
                segments.insert(0, Segment(" " * pad, style))
            elif align == "center":
                segments.insert(0, Segment(" " * (pad // 2), style))
                segments.append(Segment(" " * (pad - pad // 2), style))
            else:
                segments.append(Segment(" " * pad, style))
        return segments

    # ------------------------------------------------------------------ internals

    def _render_cell(self, column: Column, data: Row) -> Cell:
        try:
            value = column.render(data)
        except Exception as exc:  # one malformed row must not take the whole view down
            self.log.warning(f"column {column.key!r} failed to render: {exc!r}")
            return "?"
        if value.__class__ is str:
            return value if value.isprintable() else value.translate(_CONTROL_CHARS)
        return self._coerce(value)

    def _render_cells(self, data: Row) -> list[Cell]:
        """All cells of a row; the hot path of every update, so one comprehension first."""
        try:
            cells: list[Any] = [render(data) for render in self._renderers]
        except Exception:
            render = self._render_cell
            return [render(column, data) for column in self._columns]
        for index, value in enumerate(cells):
            if value.__class__ is str:
                if not value.isprintable():
                    cells[index] = value.translate(_CONTROL_CHARS)
            else:
                cells[index] = self._coerce(value)
        return cells

    @staticmethod
    def _coerce(value: Any) -> Cell:
        """A non-str render result as a cell: Text (cleaned), None as "", anything else str()."""
        if isinstance(value, Text):
            text: Text = value
            if not text.plain.isprintable():
                text = text.copy()
                text.plain = text.plain.translate(_CONTROL_CHARS)
            return text
        return "" if value is None else clean_text(str(value))

    def _haystack(self, row: _Row) -> str:
        """The row's searchable text, one cell per line (built on first use, then cached)."""
        haystack = row.haystack
        if haystack is None:
            cells = self._cells(row)
            if self._ticking:
                cells = [cells[i] for i in self._searchable]
            haystack = row.haystack = "\n".join(
                [cell.plain if isinstance(cell, Text) else cell for cell in cells]
            )
        return haystack

    def _sort_value_function(self, column: int) -> Callable[[_Row], Any]:
        """Row -> sort value for `column` (None when missing or failing; those sort last)."""
        spec = self._columns[column]
        sort_key = spec.sort_key
        log = self.log
        if sort_key is None:
            render = self._render_cell

            def default_value(row: _Row) -> Any:
                cells = row.cells
                cell = render(spec, row.data) if cells is None else cells[column]
                return natural_key(_plain(cell))

            return default_value

        def value(row: _Row) -> Any:
            try:
                return sort_key(row.data)
            except Exception as exc:
                log.warning(f"column {spec.key!r} sort key failed: {exc!r}")
                return None

        return value

    def _resort(self) -> None:
        """Re-sort with the cached values; rows valued None keep their order at the end."""
        keys = self._keys
        order = self._order
        tail: list[str] = []
        if self._nones:
            nones = self._nones
            tail = [row_id for row_id in order if row_id in nones]
            order = [row_id for row_id in order if row_id not in nones]
        try:
            order.sort(key=keys.__getitem__, reverse=self._sort_reverse)
        except TypeError:  # mixed types in one column: fall back to comparing text
            order.sort(key=lambda row_id: str(keys[row_id]), reverse=self._sort_reverse)
        if tail:
            order.extend(tail)
        self._order = order

    def _rebuild_visible(self) -> None:
        hidden = self._hidden
        if hidden:
            self._visible = [row_id for row_id in self._order if row_id not in hidden]
        else:
            self._visible = self._order.copy()
        self._index = dict(zip(self._visible, range(len(self._visible)), strict=True))
        height = len(self._visible) + 1
        if self.virtual_size.height != height:
            size = Size(0, height)
            styled_height = self.styles.height
            if self.is_mounted and not (styled_height is not None and styled_height.is_auto):
                # Only the scrollbar depends on the row count: update it without the
                # full-screen relayout that assigning the (layout=True) reactive would cost on
                # every tick. A scrollbar appearing or going still relayouts, by itself.
                self.set_reactive(VirtualTable.virtual_size, size)
                self._scroll_update(size)
            else:
                self.virtual_size = size

    def _update(
        self,
        rows: Mapping[str, Row],
        changed: Iterable[str],
        removed: Iterable[str],
        *,
        reload: bool,
    ) -> None:
        before = self._viewport_keys()
        marks_before = len(self._marked)
        # Rows on screen are re-rendered now, to repaint only if their text really changed;
        # off-screen rows just go stale (a filter needs every row's text, so then all render).
        update = _RowUpdate(self, {key[0] for key in before if key[0] is not _NO_ROWS})
        structural = update.apply(rows, changed, removed) or reload
        if update.gone or update.added or structural:
            self._reorder(rows, update.gone, update.added, reload=reload)
            self._rebuild_visible()
            self._fix_cursor()
        if len(self._marked) != marks_before:
            self.post_message(self.MarksChanged(self, frozenset(self._marked)))
        self._repaint_changed(before)

    def _reorder(
        self, rows: Mapping[str, Row], gone: set[str], added: list[str], *, reload: bool
    ) -> None:
        """The row order after rows came and went (sorted, else in the caller's order)."""
        if reload and self._sort_column is None:
            self._order = list(rows)
        else:
            if gone:
                self._order = [row_id for row_id in self._order if row_id not in gone]
            if added:
                if self._sort_column is None and len(added) > 1:
                    fresh = set(added)
                    self._order.extend(row_id for row_id in rows if row_id in fresh)
                else:
                    self._order.extend(added)
        if self._sort_column is not None:
            self._resort()

    def _fix_cursor(self) -> None:
        """Keep the cursor on its row; if that row went, take its nearest neighbour."""
        previous = self._cursor_id
        position = self._index.get(previous) if previous is not None else None
        if position is None:
            if self._visible:
                position = min(self._cursor_pos, len(self._visible) - 1)
                self._cursor_id = self._visible[position]
            else:
                position = 0
                self._cursor_id = None
        self._cursor_pos = position
        if self._cursor_id != previous:
            self.post_message(self.CursorMoved(self, self._cursor_id))

    def _move_cursor(self, position: int, *, scroll: bool = True, user: bool = False) -> None:
        """Move the cursor (`user`: by a key or a click): clamp, repaint the two lines, scroll
        only if needed."""
        if not self._visible:
            return
        position = max(0, min(position, len(self._visible) - 1))
        previous = self._cursor_id
        self._cursor_pos = position
        self._cursor_id = self._visible[position]
        if self._cursor_id != previous:
            if previous is not None:
                self._refresh_row(previous)
            self._refresh_row(self._cursor_id)
            self.post_message(self.CursorMoved(self, self._cursor_id, user))
        if scroll:
            self._scroll_cursor_into_view()

    def _scroll_cursor_into_view(self) -> None:
        top = self.scroll_offset.y
        page = self._page_height()
        position = self._cursor_pos
        if position < top:
            self.scroll_to(y=position, animate=False)
        elif position >= top + page:
            self.scroll_to(y=position - page + 1, animate=False)

    def _after_user_reorder(self) -> None:
        """After a sort or filter the user asked for: cursor on its row, shown, all repainted."""
        self._fix_cursor()
        self._scroll_cursor_into_view()
        self.refresh()

    def _refresh_row(self, row_id: str) -> None:
        position = self._index.get(row_id)
        if position is None:
            return
        y = position - self.scroll_offset.y + 1
        if 1 <= y < self.scrollable_content_region.height:
            self.refresh(Region(0, y, self._render_width(), 1))

    def _viewport_rows(self) -> Iterator[tuple[int, str]]:
        """(viewport line, row id) for every row line on screen."""
        visible = self._visible
        top = self.scroll_offset.y
        for y in range(1, self.scrollable_content_region.height):
            index = top + y - 1
            if index >= len(visible):
                return
            yield y, visible[index]

    def _viewport_keys(self) -> list[Any]:
        """What each on-screen row line shows, to repaint only the lines that differ."""
        height = self.scrollable_content_region.height
        if height <= 1:
            return []
        if not self._visible:
            return [(_NO_ROWS, bool(self._rows))]
        rows = self._rows
        cursor = self._cursor_id
        marked = self._marked
        return [
            (row_id, rows[row_id].version, row_id == cursor, row_id in marked)
            for _, row_id in self._viewport_rows()
        ]

    def _repaint_changed(self, before: list[Any]) -> None:
        after = self._viewport_keys()
        if before == after:
            return
        width = self._render_width()
        regions = [
            Region(0, y, width, 1)
            for y in range(1, max(len(before), len(after)) + 1)
            if y > len(before) or y > len(after) or before[y - 1] != after[y - 1]
        ]
        self.refresh(*regions)

    def _retick(self, row: _Row) -> bool:
        """Re-render the row's clock-driven cells; returns whether any text changed."""
        if row.cells is None:  # stale: it renders afresh when drawn, and its line is dirty
            return False
        row.tick_epoch = self._tick_epoch
        changed = False
        for index in self._ticking:
            cell = self._render_cell(self._columns[index], row.data)
            old = row.cells[index]
            if cell != old or (cell.__class__ is not str and cell.style != old.style):  # type: ignore[union-attr]
                if not changed:
                    row.cells = row.cells.copy()
                    changed = True
                row.cells[index] = cell
        if changed:
            row.version += 1
        return changed
