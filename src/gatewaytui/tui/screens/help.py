"""`?`: every key that applies, with its binding id (for remapping in the config file).

Built from the bindings themselves (`tui.bindings`): what a key does is its binding's tooltip.
"""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from gatewaytui.tui.bindings import help_rows


class HelpScreen(ModalScreen[None]):
    CSS_PATH = "help.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "close", "Close", id="help.close"),
    ]

    def rows(self) -> list[tuple[str, str, str]]:
        """(keys, what it does, binding ids) from the live bindings: the app's keymap is
        applied, so a remapped binding shows its new keys."""
        keymap = dict(getattr(self.app, "_keymap", {}))
        return [(row.key_text, row.what, row.id_text) for row in help_rows(keymap)]

    def compose(self) -> ComposeResult:
        table = Table(box=None, padding=(0, 2), expand=True)
        table.add_column("key", style="bold")
        table.add_column("what it does")
        table.add_column("binding id", style="dim")
        for key, what, binding_id in self.rows():
            table.add_row(Text(key), Text(what), Text(binding_id))
        note = Text(
            "\nRemap any key in the config file: keymap: {app.drain: ctrl+d}. "
            "Actions are hidden in read-only mode.",
            "dim",
        )
        with VerticalScroll():
            yield Static(Text("gatewaytui keys", "bold"))
            yield Static(table)
            yield Static(note)

    def action_close(self) -> None:
        self.dismiss(None)
