"""The VirtualTable's row model: rows, sort, filter, marks and the cursor, kept by row id.

Plain Python (rich's `Text` for styled cells, no Textual), so every rule of the table's data
can be unit-tested without an app: the widget (`virtual_table.py`) only turns what changed
here into repaints, scrolls and messages.

Updates are diffs: a changed row's sort value is recomputed once and cached; its cells are
re-rendered at once only if it is on screen (or a filter needs its text), otherwise when it is
next drawn; the order is re-sorted with the cached values (Timsort on a nearly-sorted list is
close to linear). The cursor stays on its row id whatever the updates do.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from rich.text import Text

__all__ = [
    "Align", "Cell", "Column", "Row", "TableModel", "TableRow", "clean_text", "compile_filter",
    "natural_key",
]  # fmt: skip

Cell = str | Text
"""What a column renders for a row: plain text (shown literally) or a styled `Text`."""
Row = Mapping[str, Any]
Align = Literal["left", "right", "center"]

_REPLACEMENT = "\ufffd"
_CONTROL_CHARS = dict.fromkeys([*range(0x20), 0x7F, *range(0x80, 0xA0)], _REPLACEMENT)
_ESCAPE = re.compile(r"\\.")
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


def compile_filter(pattern: str | None) -> re.Pattern[str] | None:
    """The filter regex for `pattern` (None or "": no filter); raises `re.error` if bad.

    Smart case (case-insensitive unless the pattern has an upper-case letter); MULTILINE, as
    the haystack has one cell per line, so `^idle$` matches a whole cell.
    """
    if not pattern:
        return None
    flags = re.MULTILINE
    if not any(char.isupper() for char in _ESCAPE.sub("", pattern)):
        flags |= re.IGNORECASE
    return re.compile(pattern, flags)


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


class TableRow:
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


def cells_equal(a: list[Cell], b: list[Cell]) -> bool:
    """Equal text, spans *and* base style (Text.__eq__ ignores `style`)."""
    if a != b:
        return False
    for x, y in zip(a, b, strict=True):
        if x.__class__ is not str and x.style != y.style:  # type: ignore[union-attr]
            return False
    return True


def plain(cell: Cell) -> str:
    return cell if cell.__class__ is str else cell.plain  # type: ignore[union-attr]


class _RowUpdate:
    """One update of a table's rows: drop the removed, add or refresh the rest, keeping the
    sort values, the filter's hidden set and the marks in step. Collects what came and went."""

    __slots__ = (
        "added", "epoch", "filtering", "gone", "haystack_of", "hidden", "keys", "marked",
        "nones", "on_screen", "render_cells", "search", "sort_value", "store",
    )  # fmt: skip

    def __init__(self, model: TableModel, on_screen: set[str]) -> None:
        self.store = model.rows
        self.keys = model.keys
        self.nones = model.nones
        self.hidden = model.hidden
        self.marked = model.marked
        self.search = None if model.filter is None else model.filter.search
        column = model.sort_column
        self.sort_value = None if column is None else model.sort_value_function(column)
        self.render_cells = model.render_cells
        self.haystack_of = model.haystack
        self.epoch = model.tick_epoch
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
        row = self.store[row_id] = TableRow(data, cells, self.epoch)
        self.added.append(row_id)
        if self.sort_value is not None:
            value = self.keys[row_id] = self.sort_value(row)
            if value is None:
                self.nones.add(row_id)
        if self.search is not None and self.search(self.haystack_of(row)) is None:
            self.hidden.add(row_id)

    def _refresh(self, row_id: str, row: TableRow) -> bool:
        """New cells (on screen, or all while filtering); True if it entered or left the
        filter's matches."""
        if row_id in self.on_screen:
            cells = self.render_cells(row.data)
            looks_changed = row.cells is None or not cells_equal(cells, row.cells)
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

    def _revalue(self, row_id: str, row: TableRow) -> bool:
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


def _ignore(message: str) -> None:
    """The default warning sink of a model used outside a widget."""


class TableModel:
    """Keyed rows with their cached cells, sort values, filter matches, marks and cursor.

    Mutators return what changed (so the widget knows what to repaint and which message to
    post) and never touch the screen. `warn` receives a line for each column that fails to
    render or sort a row (the row shows "?" or sorts last instead).
    """

    def __init__(self, columns: Sequence[Column], warn: Callable[[str], None] = _ignore) -> None:
        if not columns:
            raise ValueError("a VirtualTable needs at least one column")
        self.columns: tuple[Column, ...] = tuple(columns)
        self.column_index = {column.key: i for i, column in enumerate(self.columns)}
        if len(self.column_index) != len(self.columns):
            raise ValueError("column keys must be unique")
        self.ticking = tuple(i for i, c in enumerate(self.columns) if c.ticking)
        self.searchable = tuple(i for i, c in enumerate(self.columns) if not c.ticking)
        self.warn = warn
        self.rows: dict[str, TableRow] = {}
        self.order: list[str] = []  # every id, sorted (or in arrival order when unsorted)
        self.visible: list[str] = []  # `order` minus the filtered-out ids
        self.index: dict[str, int] = {}  # id -> position in `visible`
        self.keys: dict[str, Any] = {}  # id -> cached sort value (None sorts last)
        self.nones: set[str] = set()  # ids whose sort value is None
        self.renderers = tuple(column.render for column in self.columns)
        self.hidden: set[str] = set()  # ids the filter rejects
        self.marked: set[str] = set()
        self.sort_column: int | None = None
        self.sort_reverse = False
        self.filter: re.Pattern[str] | None = None
        self.cursor_id: str | None = None
        self.cursor_pos = 0
        self.tick_epoch = 0

    # ------------------------------------------------------------------ views of the state

    @property
    def sort_key(self) -> str | None:
        """The key of the sort column (None: arrival order)."""
        return None if self.sort_column is None else self.columns[self.sort_column].key

    @property
    def filter_pattern(self) -> str | None:
        return None if self.filter is None else self.filter.pattern

    def get_row(self, row_id: str) -> Row | None:
        """The row mapping last given for `row_id` (None if unknown)."""
        row = self.rows.get(row_id)
        return None if row is None else row.data

    # ------------------------------------------------------------------ cells

    def render_cell(self, column: Column, data: Row) -> Cell:
        try:
            value = column.render(data)
        except Exception as exc:  # one malformed row must not take the whole view down
            self.warn(f"column {column.key!r} failed to render: {exc!r}")
            return "?"
        if value.__class__ is str:
            return value if value.isprintable() else value.translate(_CONTROL_CHARS)
        return self.coerce(value)

    def render_cells(self, data: Row) -> list[Cell]:
        """All cells of a row; the hot path of every update, so one comprehension first."""
        try:
            cells: list[Any] = [render(data) for render in self.renderers]
        except Exception:
            render = self.render_cell
            return [render(column, data) for column in self.columns]
        for index, value in enumerate(cells):
            if value.__class__ is str:
                if not value.isprintable():
                    cells[index] = value.translate(_CONTROL_CHARS)
            else:
                cells[index] = self.coerce(value)
        return cells

    @staticmethod
    def coerce(value: Any) -> Cell:
        """A non-str render result as a cell: Text (cleaned), None as "", anything else str()."""
        if isinstance(value, Text):
            text: Text = value
            if not text.plain.isprintable():
                text = text.copy()
                text.plain = text.plain.translate(_CONTROL_CHARS)
            return text
        return "" if value is None else clean_text(str(value))

    def cells(self, row: TableRow) -> list[Cell]:
        """The row's cells, rendered now if the row went stale while off screen."""
        cells = row.cells
        if cells is None:
            cells = row.cells = self.render_cells(row.data)
            row.tick_epoch = self.tick_epoch
        return cells

    def haystack(self, row: TableRow) -> str:
        """The row's searchable text, one cell per line (built on first use, then cached)."""
        haystack = row.haystack
        if haystack is None:
            cells = self.cells(row)
            if self.ticking:
                cells = [cells[i] for i in self.searchable]
            haystack = row.haystack = "\n".join(
                [cell.plain if isinstance(cell, Text) else cell for cell in cells]
            )
        return haystack

    def retick(self, row: TableRow) -> bool:
        """Re-render the row's clock-driven cells; returns whether any text changed."""
        if row.cells is None:  # stale: it renders afresh when drawn, and its line is dirty
            return False
        row.tick_epoch = self.tick_epoch
        changed = False
        for index in self.ticking:
            cell = self.render_cell(self.columns[index], row.data)
            old = row.cells[index]
            if cell != old or (cell.__class__ is not str and cell.style != old.style):  # type: ignore[union-attr]
                if not changed:
                    row.cells = row.cells.copy()
                    changed = True
                row.cells[index] = cell
        if changed:
            row.version += 1
        return changed

    def restyle(self) -> None:
        """Every row renders afresh when next drawn (the columns' styles changed)."""
        for row in self.rows.values():
            row.cells = None
            row.version += 1

    # ------------------------------------------------------------------ updates

    def update(
        self,
        rows: Mapping[str, Row],
        changed: Iterable[str],
        removed: Iterable[str],
        *,
        on_screen: set[str],
        reload: bool,
    ) -> bool:
        """Apply a diff (`reload`: a full load); returns whether the visible order was rebuilt.

        Rows in `on_screen` are re-rendered now, so that only a real change of text repaints;
        the others just go stale (a filter needs every row's text, so then all render).
        """
        update = _RowUpdate(self, on_screen)
        structural = update.apply(rows, changed, removed) or reload
        if not (update.gone or update.added or structural):
            return False
        self._reorder(rows, update.gone, update.added, reload=reload)
        self.rebuild_visible()
        return True

    def _reorder(
        self, rows: Mapping[str, Row], gone: set[str], added: list[str], *, reload: bool
    ) -> None:
        """The row order after rows came and went (sorted, else in the caller's order)."""
        if reload and self.sort_column is None:
            self.order = list(rows)
        else:
            if gone:
                self.order = [row_id for row_id in self.order if row_id not in gone]
            if added:
                if self.sort_column is None and len(added) > 1:
                    fresh = set(added)
                    self.order.extend(row_id for row_id in rows if row_id in fresh)
                else:
                    self.order.extend(added)
        if self.sort_column is not None:
            self._resort()

    def rebuild_visible(self) -> None:
        hidden = self.hidden
        if hidden:
            self.visible = [row_id for row_id in self.order if row_id not in hidden]
        else:
            self.visible = self.order.copy()
        self.index = dict(zip(self.visible, range(len(self.visible)), strict=True))

    # ------------------------------------------------------------------ sort and filter

    def sort_value_function(self, column: int) -> Callable[[TableRow], Any]:
        """Row -> sort value for `column` (None when missing or failing; those sort last)."""
        spec = self.columns[column]
        sort_key = spec.sort_key
        warn = self.warn
        if sort_key is None:
            render = self.render_cell

            def default_value(row: TableRow) -> Any:
                cells = row.cells
                cell = render(spec, row.data) if cells is None else cells[column]
                return natural_key(plain(cell))

            return default_value

        def value(row: TableRow) -> Any:
            try:
                return sort_key(row.data)
            except Exception as exc:
                warn(f"column {spec.key!r} sort key failed: {exc!r}")
                return None

        return value

    def _resort(self) -> None:
        """Re-sort with the cached values; rows valued None keep their order at the end."""
        keys = self.keys
        order = self.order
        tail: list[str] = []
        if self.nones:
            nones = self.nones
            tail = [row_id for row_id in order if row_id in nones]
            order = [row_id for row_id in order if row_id not in nones]
        try:
            order.sort(key=keys.__getitem__, reverse=self.sort_reverse)
        except TypeError:  # mixed types in one column: fall back to comparing text
            order.sort(key=lambda row_id: str(keys[row_id]), reverse=self.sort_reverse)
        if tail:
            order.extend(tail)
        self.order = order

    def sort_by(self, key: str | None, reverse: bool = False) -> bool:
        """Sort by column `key` (None: arrival order); returns whether anything changed."""
        if key is not None and key not in self.column_index:
            raise ValueError(f"no column {key!r}")
        column = None if key is None else self.column_index[key]
        previous = self.sort_column
        if column == previous and reverse == self.sort_reverse:
            return False
        self.sort_column = column
        self.sort_reverse = reverse
        if column is None:
            self.keys, self.nones = {}, set()
            self.order = list(self.rows)  # first-seen order
        else:
            if column != previous:
                sort_value = self.sort_value_function(column)
                self.keys = {row_id: sort_value(row) for row_id, row in self.rows.items()}
                self.nones = {row_id for row_id, value in self.keys.items() if value is None}
            self._resort()
        self.rebuild_visible()
        return True

    def next_sort_column(self, shown: Sequence[int]) -> str:
        """The key of the column after the sort column among `shown`, wrapping round."""
        shown = list(shown) or list(range(len(self.columns)))
        current = self.sort_column
        following = [index for index in shown if current is None or index > current]
        return self.columns[following[0] if following else shown[0]].key

    def set_filter(self, compiled: re.Pattern[str] | None) -> bool:
        """Hide the rows `compiled` does not match (None: show all); returns whether it changed."""
        if compiled == self.filter:
            return False
        self.filter = compiled
        if compiled is None:
            self.hidden = set()
        else:
            search = compiled.search
            haystack = self.haystack
            self.hidden = {
                row_id for row_id, row in self.rows.items() if search(haystack(row)) is None
            }
        self.rebuild_visible()
        return True

    # ------------------------------------------------------------------ cursor and marks

    def fix_cursor(self) -> bool:
        """Keep the cursor on its row; if that row went, take its nearest neighbour.

        Returns whether the cursor's row changed."""
        previous = self.cursor_id
        position = self.index.get(previous) if previous is not None else None
        if position is None:
            if self.visible:
                position = min(self.cursor_pos, len(self.visible) - 1)
                self.cursor_id = self.visible[position]
            else:
                position = 0
                self.cursor_id = None
        self.cursor_pos = position
        return self.cursor_id != previous

    def place_cursor(self, position: int) -> str | None:
        """Cursor to `position` (clamped; needs visible rows); returns the id it was on."""
        position = max(0, min(position, len(self.visible) - 1))
        previous = self.cursor_id
        self.cursor_pos = position
        self.cursor_id = self.visible[position]
        return previous

    def toggle_mark(self, row_id: str) -> bool:
        """Mark or unmark a known row; returns False for an unknown id."""
        if row_id not in self.rows:
            return False
        if row_id in self.marked:
            self.marked.discard(row_id)
        else:
            self.marked.add(row_id)
        return True
