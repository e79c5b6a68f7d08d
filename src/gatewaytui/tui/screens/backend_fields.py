"""The backend form's fields: how they are built, read into an API body, validated with the
gateway's own `BackendSpec`, marked with errors, and filled from a backend.

The screen (`backend_form.BackendFormScreen`) keeps the flow — live validation, save, test,
the 409 conflict —; this module is everything about the fields themselves, so the parsing and
formatting rules are plain functions testable on their own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Input, Label, Select, Static, Switch, TextArea

from gatewaytui.schema.backends import BACKEND_TYPES, BackendSpec, field_errors
from gatewaytui.schema.durations import format_duration

# Form fields in order; each has an error line under it (`#err-<field>`).
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


def endpoint_rows(b: Mapping[str, Any], *, editing: bool) -> ComposeResult:
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


def limit_rows(b: Mapping[str, Any]) -> ComposeResult:
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


def model_rows(b: Mapping[str, Any]) -> ComposeResult:
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


class BackendFields:
    """Reads, checks, marks and fills the fields of one backend form on `screen`.

    `touched` holds the fields the user changed: live validation marks only those, so a
    half-typed form is not covered in errors before its fields were reached.
    """

    def __init__(self, screen: Screen[Any]) -> None:
        self.screen = screen
        self.touched: set[str] = set()

    def value(self, name: str) -> str:
        return self.screen.query_one(f"#{name}", Input).value.strip()

    def text(self, name: str) -> str:
        return self.screen.query_one(f"#{name}", TextArea).text

    def key_change(self) -> str | None:
        """The key to send: a typed one, "" to remove the stored one, None to keep it."""
        typed = self.screen.query_one("#api_key", Input).value.strip()
        if typed:
            return typed
        remove = self.screen.query_one("#remove_key", Switch)
        if remove.display and remove.value:  # only offered while a key is stored
            return ""
        return None

    def spec_body(self) -> dict[str, Any]:
        """The form as an API body; raises FormError for text the form cannot read."""
        body: dict[str, Any] = {
            "id": self.value("id"),
            "type": self.screen.query_one("#type", Select).value,
            "url": self.value("url"),
            "enabled": self.screen.query_one("#enabled", Switch).value,
            "max_concurrency": _whole("max_concurrency", self.value("max_concurrency")),
            "timeout_s": self.value("timeout_s") or "60s",
            "batch_size": _whole("batch_size", self.value("batch_size")),
            "include_models": parse_lines(self.text("include_models")),
            "exclude_models": parse_lines(self.text("exclude_models")),
            "labels": parse_labels(self.text("labels")),
            "declared_models": parse_models(self.text("declared_models")),
        }
        key = self.key_change()
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
            return self.by_field(field_errors(exc)), None
        return {}, body

    @staticmethod
    def by_field(errors: Mapping[str, str]) -> dict[str, str]:
        """Errors keyed by the gateway's field paths, as the form's fields show them."""
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
            widget = self.screen.query_one(f"#err-{name}", Static)
            widget.update(Text(f"↑ {message}") if message else "")
            widget.set_class(bool(message), "-shown")

    def fill(self, backend: Mapping[str, Any]) -> None:
        """Put a backend's values into the form (the key field stays empty, its hint and the
        remove switch follow whether this version has a key)."""
        query = self.screen.query_one
        key_set = bool(backend.get("api_key_set"))
        key = query("#api_key", Input)
        key.value = ""
        key.placeholder = key_hint(backend)
        remove = query("#remove_key", Switch)
        remove.value = False
        remove.display = query("#remove_key-text", Label).display = key_set
        query("#url", Input).value = backend.get("url", "")
        query("#type", Select).value = backend.get("type", "openai")
        query("#enabled", Switch).value = bool(backend.get("enabled", True))
        query("#max_concurrency", Input).value = str(backend.get("max_concurrency", 8))
        query("#timeout_s", Input).value = format_duration(float(backend.get("timeout_s", 60.0)))
        query("#batch_size", Input).value = str(backend.get("batch_size", 64))
        query("#include_models", TextArea).text = format_lines(backend.get("include_models") or ())
        query("#exclude_models", TextArea).text = format_lines(backend.get("exclude_models") or ())
        query("#labels", TextArea).text = format_labels(backend.get("labels") or {})
        query("#declared_models", TextArea).text = format_models(
            backend.get("declared_models") or []
        )
        self.touched.clear()
        self.show_errors({})
