"""Why the panel is read-only, in the one line a refused key shows ("read-only: viewer
token"): the actions are hidden from the footer, and pressing one says why instead of
doing nothing."""

from __future__ import annotations

from typing import Any


def read_only_reason(app: Any) -> str:
    """The first reason that applies, as the operator would fix it."""
    if app.session.is_offline:
        return "read-only: offline snapshot"
    if app.forced_read_only:
        return "read-only: --read-only"
    if app.context is not None and app.context.read_only:
        return f"read-only: context {app.context.name} has read_only: true"
    if app._role == "viewer":
        return "read-only: viewer token"
    if app.store.server.get("read_only"):
        return "read-only: the gateway is read-only"
    return "read-only"


def refused_action(app: Any, key: str, actions: frozenset[str]) -> str | None:
    """The action `key` would run if the panel were not read-only, else None."""
    for binding in app._bindings.key_to_bindings.get(key, ()):
        if binding.action in actions:
            return str(binding.action)
    return None
