"""The effective configuration as something to paste: a YAML snippet, env lines or flags.

Works on `PluginState` dicts (what `GET /api/plugins` and the state carry), so the CLI and the
panel export the same text, online or from a saved snapshot. Secrets are never included:
they are only ever known as set/unset outside the gateway.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import yaml

ExportFormat = Literal["yaml", "env", "flags"]
FORMATS: tuple[ExportFormat, ...] = ("yaml", "env", "flags")

_SECRETS_NOTE = "secrets are left out: {names}"


def _typed(arg: Mapping[str, Any]) -> Any:
    """A YAML scalar of the right type (durations stay strings like `90s`)."""
    value: Any = arg.get("value")
    match arg.get("type"):
        case "int":
            return int(value)
        case "number":
            number = float(value)
            return int(number) if number.is_integer() else number
        case "bool":
            return str(value).lower() == "true"
        case _:
            return value


def selected_args(
    plugins: Iterable[Mapping[str, Any]], *, changed_only: bool = True
) -> tuple[list[tuple[str, Mapping[str, Any]]], list[str]]:
    """(plugin id, arg) pairs to export, and the names of secrets that were left out."""
    chosen: list[tuple[str, Mapping[str, Any]]] = []
    secrets: list[str] = []
    for plugin in plugins:
        for arg in plugin.get("args", ()):
            if arg.get("deprecated"):
                continue
            if arg.get("secret"):
                if arg.get("is_set"):
                    secrets.append(f"{plugin['id']}.{arg['id']}")
                continue
            if changed_only and arg.get("source", "default") == "default":
                continue
            if arg.get("value") in (None, ""):
                continue
            chosen.append((plugin["id"], arg))
    return chosen, secrets


def export_config(
    plugins: Iterable[Mapping[str, Any]],
    fmt: ExportFormat,
    *,
    changed_only: bool = True,
) -> str:
    """The chosen arguments in `fmt`, with a comment naming secrets that were left out."""
    chosen, secrets = selected_args(plugins, changed_only=changed_only)
    note = "# " + _SECRETS_NOTE.format(names=", ".join(secrets)) + "\n" if secrets else ""
    if fmt == "yaml":
        tree: dict[str, dict[str, Any]] = {}
        for plugin_id, arg in chosen:
            tree.setdefault(plugin_id, {})[arg["id"]] = _typed(arg)
        body = yaml.safe_dump({"plugin_options": tree}, sort_keys=False) if tree else ""
        return note + body
    if fmt == "env":
        lines = [f"{arg['env']}={shlex.quote(str(arg['value']))}" for _, arg in chosen]
        return note + "".join(line + "\n" for line in lines)
    if fmt == "flags":
        parts = [f"{arg['flag']} {shlex.quote(str(arg['value']))}" for _, arg in chosen]
        if not parts:
            return note + "gatewaytui serve\n"
        return note + "gatewaytui serve \\\n" + " \\\n".join(f"  {p}" for p in parts) + "\n"
    raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
