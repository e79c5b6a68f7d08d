"""Shown instead of silence when the gateway cannot be followed: unreachable with the retry
countdown, or refused with how to give this context a token."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class ConnectionBanner(Static):
    DEFAULT_CSS = """
    ConnectionBanner {
        display: none; height: auto; margin: 0 1; padding: 0 1;
        border: round $warning; background: $boost;
    }
    ConnectionBanner.-error { border: round $error; }
    ConnectionBanner.-visible { display: block; }
    """

    def show_message(self, text: Text | None, *, error: bool = False) -> None:
        if text is None:
            self.set_class(False, "-visible")
            return
        self.set_class(True, "-visible")
        self.set_class(error, "-error")
        if text.plain != getattr(self, "_plain", None):
            self._plain = text.plain
            self.update(text)
