"""The top two lines: who and what we look at (context in its colour, versions, server and
connection state, counts), then where we are (breadcrumbs, filter, sort, marks)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class GatewayHeader(Static):
    DEFAULT_CSS = """
    GatewayHeader {
        height: 2; background: $panel; padding: 0 1;
        text-wrap: nowrap; text-overflow: ellipsis;
    }
    """

    def show(self, line1: Text, line2: Text) -> None:
        """Update only when the text changed: an idle panel writes nothing."""
        text = Text("\n").join([line1, line2])
        text.no_wrap = True
        text.overflow = "ellipsis"
        if text.plain != getattr(self, "_plain", None) or text.spans != getattr(
            self, "_spans", None
        ):
            self._plain, self._spans = text.plain, list(text.spans)
            self.update(text)
