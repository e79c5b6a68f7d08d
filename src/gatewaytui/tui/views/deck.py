"""The registered views, one shown at a time (keys 1–9, 0), kept up to date from the store.

The shown view is redrawn by diff; hidden views only keep what cannot be rebuilt later
(histories) and are redrawn in full when shown again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.widgets import ContentSwitcher

from gatewaytui.client.store import Change, StateStore
from gatewaytui.tui.formatting import STATUS_STYLES
from gatewaytui.tui.screens.jump import Jump, JumpScreen
from gatewaytui.tui.themes import status_styles
from gatewaytui.tui.views.base import VIEWS, View
from gatewaytui.tui.widgets.virtual_table import VirtualTable


class ViewDeck(ContentSwitcher):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "colon",
            "jump",
            "Jump",
            id="deck.jump",
            show=False,
            tooltip="jump: :w <worker>, :j <job>, :b <backend>, or a view (:workers, :jobs, …)",
        ),
    ]

    def __init__(self) -> None:
        super().__init__(id="views", initial=f"view-{VIEWS[0].view_id}")
        self._views = {f"view-{entry.view_id}": entry.factory() for entry in VIEWS}
        # Status word -> Rich style, from the theme's `$status-*` variables. One dict, updated
        # in place when the theme changes: the tables' columns hold it from their compose.
        self.status_styles: dict[str, str] = dict(STATUS_STYLES)

    def compose(self) -> ComposeResult:
        yield from self._views.values()

    @property
    def view(self) -> View:
        """The view shown now."""
        return self._views[self.current or ""]

    @property
    def views(self) -> Iterable[View]:
        return self._views.values()

    def table(self) -> VirtualTable | None:
        """The shown view's (first) table, if it has one."""
        try:
            return self.view.query_one(VirtualTable)
        except NoMatches:
            return None

    def show(self, view_id: str, store: StateStore) -> bool:
        """Switch to a view; redraw it in full from `store` if changes arrived while it was
        hidden. Whether it was redrawn: then it shows `store` as it is now, which may be
        newer than what the rest of the screen was drawn from (see `LiveFeed.show`)."""
        self.current = f"view-{view_id}"
        view = self.view
        if not view.stale:
            return False
        view.stale = False
        view.show_state(store, None)
        return True

    def redraw(self, store: StateStore) -> None:
        """Every view from the store (start, resume, context switch)."""
        for view in self.views:
            view.stale = False
            view.show_state(store, None)

    def apply(self, store: StateStore, change: Change) -> None:
        """The shown view by diff; hidden ones keep their histories and go stale."""
        current = self.view
        for view in self.views:
            if view is current:
                view.show_state(store, change)
            else:
                view.stale = True
                view.observe(store, change)

    def sample(self, store: StateStore) -> None:
        """Once a second, shown or not: what becomes a history (sparklines)."""
        for view in self.views:
            view.background_tick(store)

    def reset(self) -> None:
        """A new context: no filter, no marks (they named rows of the old gateway)."""
        for view in self.views:
            if view.filter_text:
                view.apply_filter("")
            for table in view.query(VirtualTable):
                table.clear_marks()

    def restyle(self, theme_variables: Mapping[str, str]) -> None:
        """A theme was applied: new status colours, and the rows drawn with the old ones are
        drawn again."""
        styles = status_styles(theme_variables)
        if styles == self.status_styles:
            return
        self.status_styles.clear()
        self.status_styles.update(styles)
        for view in self.views:
            if view.is_mounted:
                for table in view.query(VirtualTable):
                    table.restyle_rows()

    def open_details(self, row_id: str | None = None) -> None:
        """The shown view's detail screen of a row (default: the row under the cursor)."""
        if row_id is None:
            table = self.table()
            row_id = table.cursor_id if table is not None else None
        screen = self.view.detail_screen(row_id) if row_id else None
        if screen is not None:
            self.app.push_screen(screen)

    @on(VirtualTable.RowSelected)
    def _row_selected(self, event: VirtualTable.RowSelected) -> None:
        """Enter on a row (views that open rows their own way stop the message first)."""
        event.stop()
        self.open_details(event.row_id)

    # ---- `:` jumps ------------------------------------------------------------------------

    def action_jump(self) -> None:
        """The k9s-style prompt; its answer shows a view and puts the cursor on a row."""
        views = [(entry.view_id, entry.title) for entry in VIEWS]
        self.app.push_screen(JumpScreen(views), self._jump_to)

    async def _jump_to(self, jump: Jump | None) -> None:
        if jump is None:
            return
        await self.app.run_action(f"app.show_view({jump.view_id!r})")
        if jump.row_id is not None:
            await self._cursor_to(jump.row_id)

    async def _cursor_to(self, row_id: str) -> None:
        """The row under the cursor; a filter that hides it is cleared first (esc's way)."""
        table = self.table()
        if table is None or table.move_cursor_to(row_id):
            return
        if self.view.filter_text:
            await self.app.run_action("app.back")
            table.move_cursor_to(row_id)
