"""Add or edit a backend: inputs, selects and switches, validated as you type with the same
`BackendSpec` the gateway uses, and on save with the gateway's own per-field messages.

"Test connection" probes the spec in the form without saving it. The key field never shows a
stored key: it says whether one is set, and sends nothing unless a new key is typed (or
"remove the key" is switched on). A save that meets a colleague's newer edit (409) shows what
they changed and offers to reload their version or to save over it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from pydantic import ValidationError
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static, Switch, TextArea

from gatewaytui.client.errors import ActionError, ClientError
from gatewaytui.schema.backends import BACKEND_TYPES, BackendSpec, field_errors
from gatewaytui.schema.durations import format_duration
from gatewaytui.tui.context import PanelContext, panel_of

# Form fields in order; each has an error line under it (`#err-<field>`).
T = TypeVar("T")

FIELDS = (
    "id",
    "type",
    "url",
    "api_key",
    "enabled",
    "max_concurrency",
    "timeout_s",
    "batch_size",
    "include_models",
    "exclude_models",
    "labels",
    "declared_models",
)
# The spec fields a 409 compares (plus whether a key is set), in the form's order.
COMPARED = (*(f for f in FIELDS if f != "api_key"), "api_key_set", "api_key_env")

MODEL_KEYS = {
    "ctx": "context_length",
    "context_length": "context_length",
    "max_out": "max_output_tokens",
    "max_output_tokens": "max_output_tokens",
    "dim": "embedding_dimension",
    "embedding_dimension": "embedding_dimension",
    "tm": "token_modifier",
    "token_modifier": "token_modifier",
}
# A switch says its state in words too: a colour alone is not enough on every terminal.
SWITCH_TEXT = {
    "enabled": {True: "yes — in routing when healthy", False: "no — disabled, not probed"},
    "remove_key": {False: "keep", True: "remove the stored key on save"},
}
LINES_HINT = {
    "include_models": "regexes, one per line (empty: all)",
    "exclude_models": "regexes, one per line",
    "labels": "key=value, one per line",
}
MODELS_HINT = "one per line: NAME [chat,embed,stream,think] [ctx=N] [max_out=N] [dim=N] [tm=X]"


class FormError(ValueError):
    """A value the form itself cannot read (before the spec is validated)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


# ---- text <-> values -------------------------------------------------------------------------


def _whole(field: str, text: str) -> int | str:
    """A whole number from a form input (empty is an error here: no silent default)."""
    if not text:
        raise FormError(field, "required")
    with contextlib.suppress(ValueError):
        return int(text)
    return text  # the spec then says "expected a whole number"


def _number(text: str) -> int | float | str:
    """An int or float when the text is one; otherwise the text (the spec then says why)."""
    for kind in (int, float):
        with contextlib.suppress(ValueError):
            return kind(text)
    return text


def parse_lines(text: str) -> list[str]:
    """One entry per line (a regex may hold spaces); blank lines are skipped."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def format_lines(values: Sequence[str]) -> str:
    return "\n".join(values)


def parse_labels(text: str) -> dict[str, str]:
    """`key=value` per line; the value is the rest of the line (it may hold spaces or `=`)."""
    labels: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise FormError("labels", f"line {number}: expected key=value (one per line)")
        labels[key.strip()] = value.strip()
    return labels


def format_labels(labels: Mapping[str, str]) -> str:
    """The form's text: one `key=value` per line (what parse_labels reads back)."""
    return "\n".join(f"{k}={v}" for k, v in labels.items())


def parse_models(text: str) -> list[dict[str, Any]]:
    """`llama3:8b chat,stream ctx=8192 max_out=4096` per line -> declared model dicts."""
    models: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        model: dict[str, Any] = {"name": words[0]}
        for word in words[1:]:
            key, sep, value = word.partition("=")
            if not sep:
                model["capabilities"] = [c for c in word.split(",") if c]
                continue
            if key not in MODEL_KEYS:
                known = ", ".join(k for k in MODEL_KEYS if "_" not in k)
                raise FormError("declared_models", f"line {number}: unknown {key!r} ({known})")
            model[MODEL_KEYS[key]] = _number(value)
        models.append(model)
    return models


def format_models(models: list[Mapping[str, Any]]) -> str:
    lines = []
    for model in models:
        words = [str(model.get("name", ""))]
        words.append(",".join(model.get("capabilities") or ["chat", "stream"]))
        if model.get("context_length"):
            words.append(f"ctx={model['context_length']}")
        if model.get("max_output_tokens"):
            words.append(f"max_out={model['max_output_tokens']}")
        if model.get("embedding_dimension"):
            words.append(f"dim={model['embedding_dimension']}")
        if model.get("token_modifier", 1.0) != 1.0:
            words.append(f"tm={model['token_modifier']:g}")
        lines.append(" ".join(words))
    return "\n".join(lines)


def key_hint(backend: Mapping[str, Any]) -> str:
    """What the (always empty) key field says about the stored key."""
    if not backend.get("api_key_set"):
        return "none — a key, or env:VAR to read it from the gateway's environment"
    env = backend.get("api_key_env")
    hint = f"set (env:{env})" if env else "set"
    return hint + " — leave empty to keep it, type to replace it"


def form_field(error_key: str, models_text: str = "") -> tuple[str, str]:
    """Where a spec error belongs in the form, and a prefix for it (`declared_models.1.x` is
    line 2 of the models box)."""
    parts = error_key.split(".")
    if parts[0] == "declared_models" and len(parts) > 1 and parts[1].isdigit():
        line = int(parts[1]) + 1
        where = ".".join(parts[2:])
        return "declared_models", f"model {line}: " + (f"{where}: " if where else "")
    if parts[0] in FIELDS:
        return parts[0], ""
    return "form", f"{error_key}: "


def describe_changes(base: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """What a colleague changed: `url: http://a/v1 → http://b/v1`, one line per field."""
    changes = []
    for name in COMPARED:
        before, after = base.get(name), current.get(name)
        if before == after:
            continue
        if name == "declared_models":
            changes.append(f"declared models: {len(before or [])} → {len(after or [])} entries")
        elif name in ("api_key_set", "api_key_env"):
            if "the key" not in " ".join(changes):
                changes.append("the key was changed")
        else:
            changes.append(f"{name}: {_show(before, name)} → {_show(after, name)}")
    if not changes:
        changes.append("nothing visible (the key may have been replaced)")
    return changes


def _show(value: Any, name: str = "") -> str:
    if name == "timeout_s" and isinstance(value, int | float):
        return format_duration(float(value))
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "(none)"
    if isinstance(value, list):
        return ", ".join(repr(v) if " " in str(v) else str(v) for v in value) or "(none)"
    return str(value)


# ---- the screen ---------------------------------------------------------------------------------


def _row(name: str, label: str, *widgets: Any) -> ComposeResult:
    """A labelled field and the line under it for its error."""
    with Horizontal(classes="row", id=f"row-{name}"):
        yield Label(label)
        yield from widgets
    yield Static(id=f"err-{name}", classes="error")


def _lines_box(name: str, text: str) -> TextArea:
    """A few lines of text, one entry per line (regexes and label values keep spaces)."""
    return TextArea(
        text,
        id=name,
        compact=True,
        show_line_numbers=False,
        tab_behavior="focus",
        placeholder=LINES_HINT[name],
    )


def _endpoint_rows(b: Mapping[str, Any], *, editing: bool) -> ComposeResult:
    """Which server: id, type, URL, key (never shown: set or not), enabled."""
    yield from _row("id", "ID", Input(b.get("id", ""), id="id", compact=True, disabled=editing))
    types = Select(
        [(t, t) for t in BACKEND_TYPES],
        value=b.get("type", "openai"),
        allow_blank=False,
        id="type",
        compact=True,
    )
    yield from _row("type", "Type", types)
    url = Input(b.get("url", ""), placeholder="http://host:8000/v1", id="url", compact=True)
    yield from _row("url", "URL", url)
    key_set = bool(b.get("api_key_set"))
    remove_key = Switch(False, id="remove_key")
    remove_text = Label(SWITCH_TEXT["remove_key"][False], id="remove_key-text", classes="after")
    remove_key.display = remove_text.display = key_set
    key = Input(password=True, placeholder=key_hint(b), id="api_key", compact=True)
    yield from _row("api_key", "API key", key, remove_key, remove_text)
    enabled = bool(b.get("enabled", True))
    yield from _row(
        "enabled",
        "Enabled",
        Switch(enabled, id="enabled"),
        Label(SWITCH_TEXT["enabled"][enabled], id="enabled-text", classes="after"),
    )


def _limit_rows(b: Mapping[str, Any]) -> ComposeResult:
    """How hard to use it: concurrency, timeout, embedding batch."""
    concurrency = Input(str(b.get("max_concurrency", 8)), id="max_concurrency", compact=True)
    yield from _row("max_concurrency", "Max concurrency", concurrency)
    timeout = Input(
        format_duration(float(b.get("timeout_s", 60.0))),
        placeholder="60s",
        id="timeout_s",
        compact=True,
    )
    yield from _row("timeout_s", "Timeout", timeout)
    batch = Input(str(b.get("batch_size", 64)), id="batch_size", compact=True)
    yield from _row("batch_size", "Embedding batch", batch)


def _model_rows(b: Mapping[str, Any]) -> ComposeResult:
    """Which models: include / exclude patterns, labels, declared models."""
    include = format_lines(b.get("include_models") or ())
    yield from _row("include_models", "Include models", _lines_box("include_models", include))
    exclude = format_lines(b.get("exclude_models") or ())
    yield from _row("exclude_models", "Exclude models", _lines_box("exclude_models", exclude))
    labels = format_labels(b.get("labels") or {})
    yield from _row("labels", "Labels", _lines_box("labels", labels))
    declared = TextArea(
        format_models(b.get("declared_models") or []),
        id="declared_models",
        compact=True,
        show_line_numbers=False,
        tab_behavior="focus",
    )
    yield from _row("declared_models", "Declared models", declared)


class BackendFormScreen(ModalScreen[dict[str, Any] | None]):
    """`initial`: the backend as served (edit) or None (add). Dismisses with the saved backend."""

    DEFAULT_CSS = """
    BackendFormScreen { align: center middle; }
    BackendFormScreen #form-box {
        width: 100; max-width: 98%; height: auto; max-height: 98%;
        border: thick $primary; background: $panel; padding: 0 1;
    }
    BackendFormScreen #form-title { text-style: bold; height: 1; }
    BackendFormScreen #form-fields { height: auto; max-height: 70vh; }
    BackendFormScreen.-conflict #form-fields { max-height: 30vh; }
    BackendFormScreen .row { height: auto; }
    BackendFormScreen .row > Label { width: 18; height: 1; color: $text-muted; }
    BackendFormScreen .row > Input, BackendFormScreen .row > Select { width: 1fr; }
    BackendFormScreen .row > Switch { height: 1; border: none; padding: 0; width: auto; }
    BackendFormScreen .row > .after { width: auto; height: 1; padding: 0 1; color: $text-muted; }
    BackendFormScreen #declared_models { height: 4; width: 1fr; }
    BackendFormScreen #include_models, BackendFormScreen #exclude_models,
    BackendFormScreen #labels { height: 2; width: 1fr; }
    BackendFormScreen .hint { color: $text-muted; height: auto; padding-left: 18; }
    BackendFormScreen .error {
        color: $error; text-style: bold; height: auto; padding-left: 18; display: none;
    }
    BackendFormScreen .error.-shown { display: block; }
    BackendFormScreen #form-status { height: auto; }
    BackendFormScreen #conflict {
        display: none; height: auto; border: round $warning; padding: 0 1;
    }
    BackendFormScreen #conflict.-shown { display: block; }
    BackendFormScreen #conflict Horizontal { height: auto; align-horizontal: right; }
    BackendFormScreen #form-buttons { height: auto; align-horizontal: right; margin-top: 1; }
    BackendFormScreen Button { margin-left: 2; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="backend_form.cancel"),
        Binding("ctrl+s", "save", "Save", id="backend_form.save"),
        Binding("ctrl+t", "test", "Test connection", id="backend_form.test"),
    ]

    def __init__(self, initial: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.initial = dict(initial) if initial is not None else None
        self.base = self.initial  # what this edit started from (its revision is sent)
        self.touched: set[str] = set()
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
                yield from _endpoint_rows(b, editing=self.editing)
                yield from _limit_rows(b)
                yield from _model_rows(b)
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

    def _value(self, name: str) -> str:
        return self.query_one(f"#{name}", Input).value.strip()

    def _text(self, name: str) -> str:
        return self.query_one(f"#{name}", TextArea).text

    def _key_change(self) -> str | None:
        """The key to send: a typed one, "" to remove the stored one, None to keep it."""
        typed = self.query_one("#api_key", Input).value.strip()
        if typed:
            return typed
        remove = self.query_one("#remove_key", Switch)
        if remove.display and remove.value:  # only offered while a key is stored
            return ""
        return None

    def spec_body(self) -> dict[str, Any]:
        """The form as an API body; raises FormError for text the form cannot read."""
        body: dict[str, Any] = {
            "id": self._value("id"),
            "type": self.query_one("#type", Select).value,
            "url": self._value("url"),
            "enabled": self.query_one("#enabled", Switch).value,
            "max_concurrency": _whole("max_concurrency", self._value("max_concurrency")),
            "timeout_s": self._value("timeout_s") or "60s",
            "batch_size": _whole("batch_size", self._value("batch_size")),
            "include_models": parse_lines(self._text("include_models")),
            "exclude_models": parse_lines(self._text("exclude_models")),
            "labels": parse_labels(self._text("labels")),
            "declared_models": parse_models(self._text("declared_models")),
        }
        key = self._key_change()
        if key is not None:
            body["api_key"] = key
        return body

    def local_errors(self) -> tuple[dict[str, str], dict[str, Any] | None]:
        """Validate with the gateway's own model: (errors by form field, body if valid)."""
        try:
            body = self.spec_body()
        except FormError as exc:
            return {exc.field: exc.message}, None
        try:
            BackendSpec.model_validate(body)
        except ValidationError as exc:
            return self._by_field(field_errors(exc)), None
        return {}, body

    def _by_field(self, errors: Mapping[str, str]) -> dict[str, str]:
        shown: dict[str, str] = {}
        for key, message in errors.items():
            field, prefix = form_field(key)
            shown.setdefault(field, prefix + message)
        return shown

    def show_errors(self, errors: Mapping[str, str], *, only_touched: bool = False) -> None:
        for name in (*FIELDS, "form"):
            message = errors.get(name)
            if only_touched and name not in self.touched:
                message = None
            widget = self.query_one(f"#err-{name}", Static)
            widget.update(Text(f"↑ {message}") if message else "")
            widget.set_class(bool(message), "-shown")

    def set_status(self, text: Text | str) -> None:
        self.query_one("#form-status", Static).update(
            text if isinstance(text, Text) else Text(text)
        )

    # -- live validation ------------------------------------------------------------------

    def _changed(self, widget_id: str | None) -> None:
        if widget_id:
            self.touched.add("api_key" if widget_id == "remove_key" else widget_id)
        errors, _ = self.local_errors()
        self.show_errors(errors, only_touched=True)

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
        errors, body = self.local_errors()
        self.touched.update(FIELDS)
        self.show_errors(errors)
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
                    f" in {result.latency_ms:.0f} ms — {len(result.models)} model(s): ",
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
            self.show_errors(self._by_field(fields))
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
        self._fill(current)
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
        errors, body = self.local_errors()
        if body is None:
            self.show_errors(errors)
            return
        self._hide_conflict()
        self.base = {**(self.base or {}), "revision": current.get("revision")}
        self._save(body, revision=current.get("revision"))

    def _fill(self, backend: Mapping[str, Any]) -> None:
        """Put a backend's values into the form (the key field stays empty, its hint and the
        remove switch follow whether this version has a key)."""
        key_set = bool(backend.get("api_key_set"))
        key = self.query_one("#api_key", Input)
        key.value = ""
        key.placeholder = key_hint(backend)
        remove = self.query_one("#remove_key", Switch)
        remove.value = False
        remove.display = self.query_one("#remove_key-text", Label).display = key_set
        self.query_one("#url", Input).value = backend.get("url", "")
        self.query_one("#type", Select).value = backend.get("type", "openai")
        self.query_one("#enabled", Switch).value = bool(backend.get("enabled", True))
        self.query_one("#max_concurrency", Input).value = str(backend.get("max_concurrency", 8))
        self.query_one("#timeout_s", Input).value = format_duration(
            float(backend.get("timeout_s", 60.0))
        )
        self.query_one("#batch_size", Input).value = str(backend.get("batch_size", 64))
        self.query_one("#include_models", TextArea).text = format_lines(
            backend.get("include_models") or ()
        )
        self.query_one("#exclude_models", TextArea).text = format_lines(
            backend.get("exclude_models") or ()
        )
        self.query_one("#labels", TextArea).text = format_labels(backend.get("labels") or {})
        self.query_one("#declared_models", TextArea).text = format_models(
            backend.get("declared_models") or []
        )
        self.touched.clear()
        self.show_errors({})
