"""Add or edit a backend: inputs, selects and switches, validated as you type with the same
`BackendSpec` the gateway uses, and on save with the gateway's own per-field messages.

"Test connection" probes the spec in the form without saving it. The key field never shows a
stored key: it says whether one is set, and sends nothing unless a new key is typed (or
"remove the key" is switched on). A save that meets a colleague's newer edit (409) shows what
they changed and offers to reload their version or to save over it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any, ClassVar, TypeVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static, Switch, TextArea

from gatewaytui.client.errors import ActionError, ClientError
from gatewaytui.shared.text import plural
from gatewaytui.tui.context import PanelContext, panel_of
from gatewaytui.tui.screens.backend_fields import (
    FIELDS,
    MODELS_HINT,
    SWITCH_TEXT,
    BackendFields,
    FormError,
    describe_changes,
    endpoint_rows,
    format_labels,
    format_lines,
    format_models,
    limit_rows,
    model_rows,
    parse_labels,
    parse_lines,
    parse_models,
)

__all__ = [
    "BackendFormScreen", "FormError", "describe_changes", "format_labels", "format_lines",
    "format_models", "parse_labels", "parse_lines", "parse_models",
]  # fmt: skip

T = TypeVar("T")


class BackendFormScreen(ModalScreen[dict[str, Any] | None]):
    """`initial`: the backend as served (edit) or None (add). Dismisses with the saved backend."""

    CSS_PATH = "backend_form.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="backend_form.cancel"),
        Binding("ctrl+s", "save", "Save", id="backend_form.save"),
        Binding("ctrl+t", "test", "Test connection", id="backend_form.test"),
    ]

    def __init__(self, initial: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.initial = dict(initial) if initial is not None else None
        self.base = self.initial  # what this edit started from (its revision is sent)
        self.fields = BackendFields(self)
        """Reading, checking, marking and filling the fields (`backend_fields.py`)."""
        self.busy = False

    @property
    def editing(self) -> bool:
        return self.initial is not None

    @property
    def panel(self) -> PanelContext:
        return panel_of(self)

    # -- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        b = self.initial or {}
        title = (
            f"Edit backend {b.get('id')} · revision {b.get('revision')}"
            if self.editing
            else "Add a backend"
        )
        with Vertical(id="form-box"):
            yield Static(Text(title), id="form-title")
            with VerticalScroll(id="form-fields"):
                yield from endpoint_rows(b, editing=self.editing)
                yield from limit_rows(b)
                yield from model_rows(b)
                yield Static(Text(MODELS_HINT), classes="hint")
                yield Static(id="err-form", classes="error")
            with Vertical(id="conflict"):
                yield Static(id="conflict-text")
                with Horizontal():
                    yield Button("Reload theirs", id="reload", compact=True)
                    yield Button("Save over it", id="overwrite", variant="warning", compact=True)
            yield Static(id="form-status")
            with Horizontal(id="form-buttons"):
                yield Button("Test connection (^t)", id="test", compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)
                yield Button("Save (^s)", id="save", variant="primary", compact=True)

    def on_mount(self) -> None:
        self.query_one("#url" if self.editing else "#id").focus()

    # -- reading the form -----------------------------------------------------------------

    def spec_body(self) -> dict[str, Any]:
        """The form as an API body; raises FormError for text the form cannot read."""
        return self.fields.spec_body()

    def set_status(self, text: Text | str) -> None:
        self.query_one("#form-status", Static).update(
            text if isinstance(text, Text) else Text(text)
        )

    # -- live validation ------------------------------------------------------------------

    def _changed(self, widget_id: str | None) -> None:
        if widget_id:
            self.fields.touched.add("api_key" if widget_id == "remove_key" else widget_id)
        errors, _ = self.fields.local_errors()
        self.fields.show_errors(errors, only_touched=True)

    @on(Input.Changed)
    def _input_changed(self, event: Input.Changed) -> None:
        self._changed(event.input.id)

    @on(Switch.Changed)
    def _switch_changed(self, event: Switch.Changed) -> None:
        switch_id = event.switch.id or ""
        if switch_id in SWITCH_TEXT:
            label = self.query_one(f"#{switch_id}-text", Label)
            label.update(SWITCH_TEXT[switch_id][event.value])
        self._changed(switch_id)

    @on(Select.Changed)
    def _select_changed(self, event: Select.Changed) -> None:
        self._changed(event.select.id)

    @on(TextArea.Changed)
    def _models_changed(self, event: TextArea.Changed) -> None:
        self._changed(event.text_area.id)

    # -- buttons and keys -----------------------------------------------------------------

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        button = event.button.id
        if button == "save":
            self.action_save()
        elif button == "test":
            self.action_test()
        elif button == "cancel":
            self.action_cancel()
        elif button == "reload":
            self.reload_theirs()
        elif button == "overwrite":
            self.save_over()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _checked_body(self, fix: str) -> dict[str, Any] | None:
        """Every field checked (and marked); the body to send, or None (`fix` says why)."""
        if self.busy:
            return None
        errors, body = self.fields.local_errors()
        self.fields.touched.update(FIELDS)
        self.fields.show_errors(errors)
        if body is None:
            self.set_status(Text(fix, "bold red"))
        return body

    def action_save(self) -> None:
        body = self._checked_body("Fix the fields marked above.")
        if body is not None:
            self._save(body)

    def action_test(self) -> None:
        body = self._checked_body("Fix the fields marked above to test them.")
        if body is not None:
            self._test(body)

    # -- gateway calls --------------------------------------------------------------------

    async def _call(self, doing: str, call: Awaitable[T], failed: str) -> T | None:
        """The gateway's answer, busy meanwhile; a refusal marks the fields it names, any
        other error shows after `failed` (None for both)."""
        self.busy = True
        self.set_status(Text(doing, "italic"))
        try:
            return await call
        except ActionError as exc:
            self._show_refusal(exc)
        except ClientError as exc:
            self.set_status(Text(f"{failed}{exc.message}", "bold red"))
        finally:
            self.busy = False
        return None

    @work(exclusive=True, group="backend-form")
    async def _test(self, body: dict[str, Any]) -> None:
        call = self.panel.session.probe_backend(body["id"], body)
        result = await self._call(f"Testing {body['url']} …", call, "✖ ")
        if result is None:
            return
        if result.ok:
            models = ", ".join(result.models) or "no models"
            self.set_status(
                Text.assemble(
                    ("✓ connected", "bold green"),
                    f" in {result.latency_ms:.0f} ms — {plural(len(result.models), 'model')}: ",
                    Text(models),
                )
            )
        else:
            self.set_status(
                Text.assemble(("✖ failed: ", "bold red"), Text(result.error or "no answer"))
            )

    @work(exclusive=True, group="backend-form")
    async def _save(self, body: dict[str, Any], *, revision: int | None = None) -> None:
        session = self.panel.session
        if self.editing:
            assert self.base is not None
            wanted = revision if revision is not None else self.base.get("revision")
            call = session.replace_backend(body["id"], body, revision=wanted)
        else:
            call = session.create_backend(body)
        saved = await self._call("Saving …", call, "✖ not saved: ")
        if saved is not None:
            self.dismiss(saved.model_dump(mode="json"))

    def _show_refusal(self, exc: ActionError) -> None:
        if exc.status == 409 and exc.code == "revision_conflict" and exc.current is not None:
            self.show_conflict(exc.current)
            return
        fields = dict(exc.fields)
        if exc.code == "backend_exists":
            fields = {"id": exc.message}
        if fields:
            self.fields.show_errors(self.fields.by_field(fields))
            self.set_status(
                Text("The gateway refused it: see the fields marked above.", "bold red")
            )
        else:
            self.set_status(Text(f"✖ {exc}", "bold red"))

    # -- 409: someone else saved first ----------------------------------------------------

    def show_conflict(self, current: dict[str, Any]) -> None:
        self._current = current
        base = self.base or {}
        lines = describe_changes(base, current)
        text = Text.assemble(
            ("Changed on the gateway since you opened this form ", "bold"),
            f"(revision {base.get('revision')} → {current.get('revision')}):\n",
        )
        for line in lines:
            text.append("  • ")
            text.append(line)
            text.append("\n")
        text.append(
            "Reload theirs: the form shows their version (your edits here are dropped). "
            "Save over it: your version replaces theirs."
        )
        self.query_one("#conflict-text", Static).update(text)
        self.query_one("#conflict").add_class("-shown")
        self.add_class("-conflict")
        self.set_status(Text("Not saved: someone else saved first.", "bold yellow"))
        self.query_one("#reload", Button).focus()

    def _hide_conflict(self) -> None:
        self.query_one("#conflict").remove_class("-shown")
        self.remove_class("-conflict")

    def reload_theirs(self) -> None:
        current = getattr(self, "_current", None)
        if current is None:
            return
        self.base = current
        self.fields.fill(current)
        self._hide_conflict()
        self.query_one("#form-title", Static).update(
            Text(f"Edit backend {current.get('id')} · revision {current.get('revision')}")
        )
        self.set_status(Text(f"Reloaded revision {current.get('revision')}.", "green"))
        self.query_one("#url", Input).focus()

    def save_over(self) -> None:
        current = getattr(self, "_current", None)
        if current is None:
            return
        errors, body = self.fields.local_errors()
        if body is None:
            self.fields.show_errors(errors)
            return
        self._hide_conflict()
        self.base = {**(self.base or {}), "revision": current.get("revision")}
        self._save(body, revision=current.get("revision"))
