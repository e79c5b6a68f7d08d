"""The session the panel follows: a saved snapshot, or a context's live gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gatewaytui.client.session import Session
from gatewaytui.tui.config import ContextConfig, resolve_token


def open_session(
    context: ContextConfig | None,
    snapshot: Path | None = None,
    options: dict[str, Any] | None = None,
) -> Session:
    """The session of `snapshot`, else of `context`.

    Raises `ConfigError` when the context's token file is missing, unreadable or empty
    (the message names the context and the file, never a token), `ClientError` (a
    `SnapshotError`) for a bad snapshot file.
    """
    if snapshot is not None:
        return Session.offline(snapshot)
    if context is None:
        raise ValueError("a context or a snapshot is needed")
    return Session.live(context.name, context.url, resolve_token(context), **(options or {}))
