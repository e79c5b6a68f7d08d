"""What the confirmation dialogs share: a title, a body that can follow the live state while
the dialog is open (the rows it names change under it), and a result of yes or no."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.screen import ModalScreen
from textual.widgets import Static


class LiveDialog(ModalScreen[bool]):
    """A yes/no dialog whose body (shown in `#confirm-body`) can follow live updates."""

    def __init__(self, title: str, body: Text) -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.live_body: Callable[[], Text] | None = None
        """Rebuilds the body from the store: set, the rows follow live updates while open."""

    def show_state(self, store: Any, change: Any) -> None:
        """A state update while open (the live feed calls it): in-flight and ready counts
        change under the dialog, and it shows them as they are."""
        if self.live_body is None:
            return
        body = self.live_body()
        if body.plain != self.body.plain:
            self.body = body
            self.query_one("#confirm-body", Static).update(body)
