"""The top lines: who and what we look at (context in its colour, server and connection
state), how many (workers, jobs, queue, version: on the same line when it fits, else on a line
of their own), then where we are (breadcrumbs, filter, rows, marks, drains)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class GatewayHeader(Static):
    DEFAULT_CSS = """
    GatewayHeader {
        height: auto; background: $panel; padding: 0 1;
        text-wrap: nowrap; text-overflow: ellipsis;
    }
    """

    def show(self, *lines: Text) -> None:
        """Update only when the text changed: an idle panel writes nothing.

        Two lines when the counts fit next to the context and its state, three when not.
        """
        text = Text("\n").join(lines)
        text.no_wrap = True
        text.overflow = "ellipsis"
        if text.plain != getattr(self, "_plain", None) or text.spans != getattr(
            self, "_spans", None
        ):
            self._plain, self._spans = text.plain, list(text.spans)
            self.update(text)
