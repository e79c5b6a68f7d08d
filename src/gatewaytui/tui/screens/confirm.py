"""A dangerous action behind a dialog whose default is Cancel (k9s habit): `y` confirms,
`n`/`esc` cancel, and the focused button is Cancel."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Static

from gatewaytui.tui.screens.dialog import LiveDialog
from gatewaytui.tui.widgets.footer import GatewayFooter


class ConfirmScreen(LiveDialog):
    CSS_PATH = "confirm.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "confirm", "Yes", id="confirm.yes"),
        Binding("n,escape", "cancel", "No", id="confirm.no"),
    ]

    def __init__(
        self, title: str, body: Text, confirm_label: str, *, cancel_label: str = "Cancel"
    ) -> None:
        super().__init__(title, body)
        self.cancel_label = cancel_label
        self.confirm_label = confirm_label

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(self.title_text), classes="title")
            yield Static(self.body, classes="body", id="confirm-body")
            with Horizontal():
                yield Button(f"{self.cancel_label} (n)", id="cancel", variant="default")
                yield Button(f"{self.confirm_label} (y)", id="confirm", variant="warning")
        yield GatewayFooter()  # y / n, not the keys of the view behind the dialog

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm")

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
