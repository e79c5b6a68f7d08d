"""What every view offers the app: a title, a key, full and incremental refresh, a filter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual.containers import Vertical
from textual.screen import Screen

from gatewaytui.client.store import Change, StateStore
from gatewaytui.tui.context import PanelContext, panel_of


class View(Vertical):
    """A full-screen view over the store. Subclasses set `view_id`, `title`, `key`."""

    view_id: ClassVar[str] = ""
    title: ClassVar[str] = ""
    filterable: ClassVar[bool] = True
    row_actions: ClassVar[frozenset[str]] = frozenset()
    """The app's row actions (`drain`, `undrain`, `cancel_job`) that apply to this view's rows."""

    def __init__(self) -> None:
        super().__init__(id=f"view-{self.view_id}", classes="view")
        self.filter_text = ""
        self.stale = False  # changes arrived while hidden: redraw in full when shown

    @property
    def panel(self) -> PanelContext:
        return panel_of(self)

    def show_state(self, store: StateStore, change: Change | None) -> None:
        """Bring the view up to date; `change` None means everything may have changed."""

    def observe(self, store: StateStore, change: Change | None) -> None:
        """While hidden: keep history that cannot be rebuilt later (rates), nothing else."""

    def background_tick(self, store: StateStore) -> None:
        """Once a second, shown or not: sample what becomes a history (sparklines)."""

    def tick(self) -> None:
        """Once a second: re-render what depends on the clock (ages, elapsed)."""

    def apply_filter(self, pattern: str) -> str | None:
        """Filter rows by a regex over all columns; returns an error for a bad pattern."""
        self.filter_text = pattern
        return None

    def header_hint(self) -> Text | None:
        """A few words for the header's second line about the view's own state (follow)."""
        return None

    def detail_screen(self, row_id: str) -> Screen[None] | None:
        """What enter on a row opens (None: nothing, or the view handles it itself)."""
        return None

    @classmethod
    def has_details(cls) -> bool:
        return cls.detail_screen is not View.detail_screen

    def focus_main(self) -> None:
        """Give focus to the view's main widget (its table)."""
        self.focus()


@dataclass(frozen=True)
class ViewEntry:
    key: str
    view_id: str
    title: str
    factory: Callable[[], View]


VIEWS: list[ViewEntry] = []


def register_view(key: str) -> Callable[[type[View]], type[View]]:
    """Class decorator: put a view in the registry under a number key."""

    def register(cls: type[View]) -> type[View]:
        VIEWS.append(ViewEntry(key, cls.view_id, cls.title, cls))
        VIEWS.sort(key=lambda entry: (entry.key == "0", entry.key))  # 0 after 9, as on keyboards
        return cls

    return register
