"""A view whose body is one VirtualTable fed from one store collection."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from textual.app import ComposeResult

from gatewaytui.client.store import Change, StateStore
from gatewaytui.tui.fleet import clustered, degraded
from gatewaytui.tui.formatting import count
from gatewaytui.tui.views.base import View
from gatewaytui.tui.widgets.virtual_table import Column, VirtualTable


def numeric_column(
    key: str,
    label: str,
    *,
    fmt: Callable[[Any], str] = count,
    width: int = 7,
    priority: int = 0,
) -> Column:
    """A right-aligned number read from `row[key]`, sorted by its value, shown with `fmt`."""
    return Column(
        key,
        label,
        lambda row: fmt(row.get(key)),
        sort_key=lambda row: row.get(key) or 0,
        width=width,
        align="right",
        priority=priority,
    )


class TableView(View):
    """Rows are the store's `collection`; subclasses give the columns."""

    collection: ClassVar[str] = ""
    default_sort: ClassVar[tuple[str, bool]] = ("id", False)
    markable: ClassVar[bool] = False
    """Space marks rows, for an action on several at once (only Workers has one)."""
    fleet_columns: ClassVar[frozenset[str]] = frozenset()
    # Rows held by other replicas are drawn as last heard while this replica lost Redis
    # (its cells read `stale_shown`); the rows restyle when that flips.
    stale_when_degraded: ClassVar[bool] = False
    stale_shown = False
    """Columns shown only when the gateway is a replica of a fleet (REPLICA)."""
    selectable: ClassVar[bool | None] = None
    """Enter opens the row under the cursor. None: when the view handles
    `VirtualTable.RowSelected` itself (the app opens workers and jobs)."""

    def opens_rows(self) -> bool:
        if self.selectable is not None:
            return self.selectable
        return any(
            VirtualTable.RowSelected in vars(cls).get("_decorated_handlers", {})
            or "on_virtual_table_row_selected" in vars(cls)
            for cls in type(self).__mro__
        )

    def columns(self) -> Sequence[Column]:
        raise NotImplementedError

    def compose(self) -> ComposeResult:
        table = VirtualTable(
            self.columns(),
            empty_text=f"no {self.title.lower()}",
            id=f"{self.view_id}-table",
            markable=self.markable,
            selectable=self.opens_rows(),
        )
        key, reverse = self.default_sort
        table.sort_by(key, reverse)
        self._table = table
        yield table

    @property
    def table(self) -> VirtualTable:
        """The view's table, held directly: a clock tick during teardown must not query."""
        table = getattr(self, "_table", None)
        return table if table is not None else self.query_one(VirtualTable)

    def rows(self, store: StateStore) -> Mapping[str, Mapping[str, Any]]:
        return store.items[self.collection]

    def show_fleet_columns(self, store: StateStore) -> None:
        """The fleet's columns when the gateway is a replica; a single node looks as ever."""
        if self.fleet_columns:
            self.table.hide_columns(() if clustered(store) else self.fleet_columns)

    def show_state(self, store: StateStore, change: Change | None) -> None:
        self.show_fleet_columns(store)
        if self.stale_when_degraded and degraded(store) != self.stale_shown:
            self.stale_shown = not self.stale_shown  # other replicas' rows: stale / live again
            self.table.restyle_rows()
        rows = self.rows(store)
        if change is None or change.snapshot:
            self.table.set_rows(rows)
            return
        if not change.touched(self.collection):
            return
        changed = set(change.added.get(self.collection, ())) | set(
            change.changed.get(self.collection, ())
        )
        self.table.apply(rows, changed, change.removed.get(self.collection, ()))

    def tick(self) -> None:
        self.table.tick()

    def apply_filter(self, pattern: str) -> str | None:
        error = self.table.set_filter(pattern or None)
        if error is None:
            self.filter_text = pattern
        return error

    def focus_main(self) -> None:
        self.table.focus()
