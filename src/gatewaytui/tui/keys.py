"""Binding ids and the user's keymap (`keymap: {app.drain: ctrl+d}` in the config file)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from textual.app import App

from gatewaytui.tui.config import check_keymap

# Binding ids of widgets and screens (the app's own are read from its bindings).
KNOWN_BINDING_IDS = frozenset(
    {
        "table.cursor_up", "table.cursor_down", "table.page_up", "table.page_down",
        "table.first", "table.last", "table.mark", "table.select", "table.sort",
        "table.reverse", "events.follow", "confirm.yes", "confirm.no",
        "type_confirm.cancel", "detail.back", "detail.drain", "detail.undrain", "help.close",
        "job_detail.back", "job_detail.cancel", "event_detail.back",
        "plugins.export", "export.yaml", "export.env", "export.flags", "export.all",
        "export.copy", "export.close",
        "backends.add", "backends.edit", "backends.toggle", "backends.probe", "backends.delete",
        "backend_form.cancel", "backend_form.save", "backend_form.test",
    }
)  # fmt: skip


def apply_keymap(app: App[Any], keymap: Mapping[str, str]) -> None:
    """Remap keys by binding id; unknown ids and clashes are warned about, not fatal."""
    known = {b.id for _, b in app._bindings if b.id} | KNOWN_BINDING_IDS
    for warning in check_keymap(keymap, known):
        app.notify(warning, severity="warning", timeout=10)
    app.set_keymap(dict(keymap))
    palette_keys = keymap.get("app.command_palette")
    if palette_keys:  # the footer shows the palette under its (first) key
        # On this app only (a class variable Textual reads through the instance).
        setattr(app, "COMMAND_PALETTE_BINDING", palette_keys.split(",")[0])  # noqa: B010
