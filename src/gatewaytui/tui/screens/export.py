"""The effective configuration as a YAML snippet, env lines or flags, copied with OSC 52 so it
reaches the operator's own clipboard even over SSH. Secrets are never part of it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from gatewaytui.schema.options_export import FORMATS, ExportFormat, export_config
from gatewaytui.tui.widgets.footer import GatewayFooter

LABELS = {"yaml": "YAML", "env": "env lines", "flags": "flags"}


class ExportScreen(ModalScreen[None]):
    CSS_PATH = "export.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "format('yaml')", "YAML", id="export.yaml"),
        Binding("v", "format('env')", "Env", id="export.env"),
        Binding("f", "format('flags')", "Flags", id="export.flags"),
        Binding("a", "toggle_all", "All/changed", id="export.all"),
        Binding("c", "copy", "Copy", id="export.copy"),
        Binding("escape,q", "close", "Close", id="export.close"),
    ]

    def __init__(self, plugins: Sequence[Mapping[str, Any]]) -> None:
        super().__init__()
        self.plugins = plugins
        self.fmt: ExportFormat = "yaml"
        self.changed_only = True

    @property
    def text(self) -> str:
        return export_config(self.plugins, self.fmt, changed_only=self.changed_only)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(id="export-title")
            with VerticalScroll():
                yield Static(id="export-body")
        yield GatewayFooter()

    def on_mount(self) -> None:
        self._show()

    def _show(self) -> None:
        scope = "changed from the defaults" if self.changed_only else "every option"
        title = Text.assemble(
            "Effective configuration as ",
            (LABELS[self.fmt], "bold"),
            f" ({scope})  ",
            ("y yaml · v env · f flags · a all/changed · c copy", "dim"),
        )
        self.query_one("#export-title", Static).update(title)
        body = self.text or "# nothing differs from the defaults (press a for every option)\n"
        self.query_one("#export-body", Static).update(Text(body))

    def action_format(self, fmt: str) -> None:
        if fmt in FORMATS:
            self.fmt = fmt
            self._show()

    def action_toggle_all(self) -> None:
        self.changed_only = not self.changed_only
        self._show()

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.text)
        self.notify(f"copied {LABELS[self.fmt]} to the clipboard (OSC 52)", timeout=4, markup=False)

    def action_close(self) -> None:
        self.dismiss(None)
