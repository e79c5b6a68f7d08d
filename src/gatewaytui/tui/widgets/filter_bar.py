"""`/`: the filter box at the bottom, a regex over all columns of the current view.

It applies what is typed to the view as it is typed; a bad regex marks the box and its error
shows on the header's second line while typing (enter keeps the last good filter).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from textual import on
from textual.app import ComposeResult
from textual.containers import Container
from textual.widgets import Input

from gatewaytui.tui.messages import PanelStateChanged


class Filterable(Protocol):
    """What the box filters (a view)."""

    filter_text: str

    def apply_filter(self, pattern: str) -> str | None: ...
    def focus_main(self) -> None: ...


class FilterBar(Container):
    def __init__(self, current_view: Callable[[], Filterable]) -> None:
        super().__init__(id="filter-bar")
        self._current_view = current_view
        self.input = Input(
            placeholder="regex over all columns · enter keeps · esc clears", id="filter"
        )
        self.error: str | None = None  # what is wrong with the regex being typed

    def compose(self) -> ComposeResult:
        yield self.input

    @property
    def typing_error(self) -> str | None:
        """The regex error, while the box has focus (the header shows it)."""
        return self.error if self.error is not None and self.input.has_focus else None

    def show(self, visible: bool) -> None:
        self.set_class(visible, "-visible")

    def open(self) -> None:
        """Show the box with the view's filter, focused."""
        self.input.value = self._current_view().filter_text
        self.show(True)
        # Focus now, not via `focus()` (a callback queued behind keys already received): over
        # SSH `/ready` arrives in one batch, and its `d` and `y` must be typed, not acted on.
        self.screen.set_focus(self.input)

    def clear(self) -> None:
        """No filter on the current view; the box hides."""
        self.input.value = ""
        self._current_view().apply_filter("")
        self.show(False)

    @on(Input.Changed, "#filter")
    def _changed(self, event: Input.Changed) -> None:
        event.stop()
        error = self._current_view().apply_filter(event.value)
        event.input.set_class(error is not None, "-invalid")
        event.input.tooltip = error
        self.error = error
        self.post_message(PanelStateChanged())

    @on(Input.Submitted, "#filter")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        view = self._current_view()
        if self.error is not None:
            self.app.notify(f"{self.error}; the filter is unchanged", severity="warning", timeout=6)
            self.error = None
        self.show(bool(view.filter_text))
        view.focus_main()
        self.post_message(PanelStateChanged())
