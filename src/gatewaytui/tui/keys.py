"""Binding ids and the user's keymap (`keymap: {app.drain: ctrl+d}` in the config file)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from textual.app import App

from gatewaytui.tui.bindings import known_binding_ids
from gatewaytui.tui.config import check_keymap


def apply_keymap(app: App[Any], keymap: Mapping[str, str]) -> None:
    """Remap keys by binding id; unknown ids and clashes are warned about, not fatal."""
    known = known_binding_ids()
    for warning in check_keymap(keymap, known):
        app.notify(warning, severity="warning", timeout=10)
    app.set_keymap(dict(keymap))
    palette_keys = keymap.get("app.command_palette")
    if palette_keys:  # the footer shows the palette under its (first) key
        # On this app only (a class variable Textual reads through the instance).
        setattr(app, "COMMAND_PALETTE_BINDING", palette_keys.split(",")[0])  # noqa: B010
