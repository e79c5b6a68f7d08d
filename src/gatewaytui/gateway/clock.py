"""Wall-clock helpers: ISO-8601 UTC strings as they appear on the wire."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def iso(ts: float | None) -> str | None:
    """An epoch timestamp as ISO-8601 UTC with milliseconds, or None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_now() -> str:
    return iso(time.time())  # type: ignore[return-value]
