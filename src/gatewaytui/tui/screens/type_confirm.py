"""For the most dangerous actions (server drain): type the context name to confirm."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Input, Static

from gatewaytui.tui.screens.dialog import LiveDialog
from gatewaytui.tui.widgets.footer import GatewayFooter


class TypeToConfirmScreen(LiveDialog):
    CSS_PATH = "type_confirm.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="type_confirm.cancel"),
    ]

    def __init__(self, title: str, body: Text, expected: str) -> None:
        super().__init__(title, body)
        self.expected = expected

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(self.title_text), classes="title")
            yield Static(self.body, id="confirm-body")
            yield Static(Text.assemble("Type ", (self.expected, "bold"), " to confirm:"))
            # Not the word itself as placeholder: an empty box would look already filled in.
            yield Input(placeholder="type it here", id="typed")
            yield Static("enter confirms · esc cancels", classes="hint")
        yield GatewayFooter()

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.value == self.expected:
            self.dismiss(True)
        else:
            self.query_one(".hint", Static).update(
                Text(f"that is not {self.expected!r}; esc cancels", "bold red")
            )

    def action_cancel(self) -> None:
        self.dismiss(False)
