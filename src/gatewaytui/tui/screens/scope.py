"""In a fleet, a server drain (or undrain) first asks how far it reaches: the replica the
panel is connected to, or every live replica. The default, as in every dialog, is Cancel."""

from __future__ import annotations

from typing import ClassVar, Literal

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from gatewaytui.tui.widgets.footer import GatewayFooter

Scope = Literal["replica", "fleet"]


class ScopeScreen(ModalScreen[Scope | None]):
    """`r` this replica, `f` the whole fleet, `n` / `esc` cancel (the focused button)."""

    CSS_PATH = "scope.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "choose('replica')", "This replica", id="scope.replica"),
        Binding("f", "choose('fleet')", "Whole fleet", id="scope.fleet"),
        Binding("n,escape", "cancel", "Cancel", id="scope.cancel"),
    ]

    def __init__(self, title: str, body: Text, replica: str, replicas: int) -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.replica = replica
        self.replicas = replicas

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(self.title_text), classes="title")
            yield Static(self.body)
            with Horizontal():
                yield Button("Cancel (n)", id="cancel", variant="default")
                yield Button(Text(f"Replica {self.replica} (r)"), id="replica", variant="warning")
                yield Button(f"All {self.replicas} replicas (f)", id="fleet", variant="error")
        yield GatewayFooter()

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "replica":
            self.dismiss("replica")
        elif event.button.id == "fleet":
            self.dismiss("fleet")
        else:
            self.dismiss(None)

    def action_choose(self, scope: Scope) -> None:
        self.dismiss(scope)

    def action_cancel(self) -> None:
        self.dismiss(None)
