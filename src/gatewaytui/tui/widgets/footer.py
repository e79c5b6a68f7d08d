"""The footer: Textual's, but `? Help` and `q Quit` never fall off a narrow terminal.

Textual's footer lays the keys out in one row and cuts what does not fit, and the keys that
come last (the app's: help and quit) are the first to go. This one leaves out the least
important keys until the rest fit the width. The keys left out still work, and the help
screen (`?`) lists them all.
"""

from __future__ import annotations

from rich.cells import cell_len
from textual import events
from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

# Left out first to last when the keys do not fit; anything not listed stays.
DROP_ORDER: tuple[str, ...] = (
    "reverse_sort",
    "cycle_sort",
    "save_snapshot",
    "pause",
    "toggle_follow",
    "filter",
    "toggle_mark",
    "export",
    "probe",
    "toggle_enabled",
    "delete",
)
PALETTE_WIDTH = 14  # "▏^p palette" on the right, with its border and padding


def key_width(key: FooterKey) -> int:
    """Cells a footer key takes: ` key desc ` (the padding of Textual's FooterKey)."""
    if not key.description:
        return cell_len(key.key_display)
    return cell_len(key.key_display) + cell_len(key.description) + 3


def fit_keys(keys: list[FooterKey], width: int) -> list[FooterKey]:
    """The keys that fit in `width` cells, dropping by `DROP_ORDER`, order kept."""
    kept = list(keys)
    total = sum(key_width(key) for key in kept)
    for action in DROP_ORDER:
        if total <= width:
            break
        for key in [key for key in kept if key.action.rpartition(".")[2] == action]:
            kept.remove(key)
            total -= key_width(key)
    return kept


class GatewayFooter(Footer):
    """A footer that keeps the important keys (help and quit above all) at any width."""

    def compose(self) -> ComposeResult:
        widgets: list[Widget] = list(super().compose())
        palette = [w for w in widgets if w.has_class("-command-palette")]
        keys = [w for w in widgets if isinstance(w, FooterKey) and w not in palette]
        self._composed_width = self._width()
        if len(keys) + len(palette) != len(widgets):
            yield from widgets  # grouped keys (none here): as Textual lays them out
            return
        width = self._composed_width - (PALETTE_WIDTH if palette else 0)
        kept = fit_keys(keys, width)
        self.styles.grid_size_columns = len(kept)
        yield from kept
        yield from palette

    def _width(self) -> int:
        return self.size.width or self.app.size.width

    def on_resize(self, event: events.Resize) -> None:
        if event.size.width != getattr(self, "_composed_width", None):
            self.call_after_refresh(self.recompose)
