"""Plain formatting of wire values for cells: ages, counts, rates, statuses.

Status is always glyph + word (+ colour from the theme), never colour alone.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

from rich.text import Text

from gatewaytui.schema.durations import parse_duration

STATUS_GLYPHS = {
    "connected": "◌",
    "working": "●",
    "idle": "○",
    "not_ready": "✖",
    "unresponsive": "⊘",
    "draining": "◐",
    "gone": "·",
    "ready": "●",
    "healthy": "●",
    "unhealthy": "✖",
    "unknown": "?",
}

# Styles are theme variables resolved by the app (see App.status_style); these are fallbacks
# for 16-colour terminals and tests.
STATUS_STYLES = {
    "connected": "cyan",
    "working": "bold green",
    "idle": "green",
    "not_ready": "bold red",
    "unresponsive": "bold magenta",
    "draining": "bold yellow",
    "gone": "dim",
    "ready": "bold green",
    "healthy": "green",
    "unhealthy": "bold red",
    "unknown": "dim",
}

STATUS_ORDER = {
    s: i
    for i, s in enumerate(
        ["unresponsive", "not_ready", "draining", "working", "connected", "idle", "gone"]
    )
}


def status_text(status: str | None, styles: dict[str, str] | None = None) -> Text:
    """`● working` with its style; an unknown status is shown as-is, unstyled."""
    word = status or "unknown"
    style = (styles or STATUS_STYLES).get(word, "")
    return Text(f"{STATUS_GLYPHS.get(word, '?')} {word.replace('_', ' ')}", style=style)


@lru_cache(maxsize=65536)
def parse_ts(value: str | None) -> float | None:
    """Epoch seconds of an ISO-8601 wire timestamp (cached: the same strings recur)."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def age(seconds: float | None) -> str:
    """`4s`, `2m05s`, `3h12m`, `2d04h`: short, fixed-ish width, never negative."""
    if seconds is None:
        return "-"
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def coarse_age(seconds: float) -> str:
    """Like `age` but whole minutes past a minute: a clock column that changes rarely."""
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    return age(s)


def age_since(value: str | None, now: float | None = None) -> str:
    ts = parse_ts(value)
    if ts is None:
        return "-"
    return age((time.time() if now is None else now) - ts)


def prompt_tokens(n: int | None) -> str:
    """A job's prompt tokens: `-` until known (a prompt has at least one token: 0 means the
    usage has not arrived, e.g. still running or cancelled, not an empty prompt)."""
    return count(n) if n else "-"


def count(n: float | int | None) -> str:
    """1234 -> `1.2k`, 5_600_000 -> `5.6M`; small numbers as they are."""
    if n is None:
        return "-"
    value = float(n)
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.1f}{unit}"
    return f"{int(value)}" if value.is_integer() else f"{value:.1f}"


def ms(value: float | None) -> str:
    if not value:
        return "-"
    return f"{value / 1000:.1f}s" if value >= 10_000 else f"{value:.0f}ms"


def millis(value: Any) -> str:
    """A duration in milliseconds as the lists show it: `412ms`, `4.6s`, `27s`; `-` if unknown."""
    if value is None:
        return "-"
    ms = float(value)
    if ms >= 10_000:
        return f"{ms / 1000:.0f}s"
    if ms >= 1000:
        return f"{ms / 1000:.1f}s"
    return f"{ms:.0f}ms"


def bar(done: int, total: int, width: int = 10) -> str:
    """A text progress bar `███████░░░ 70%` (readable without colour)."""
    if total <= 0:
        return "-"
    ratio = min(max(done / total, 0.0), 1.0)
    filled = round(ratio * width)
    return "█" * filled + "░" * (width - filled) + f" {ratio:4.0%}"


SERVING_STATUSES = frozenset({"idle", "working", "connected"})
DEFAULT_STALE_AFTER = 15.0


def serving_count(workers: Mapping[str, Mapping[str, Any]]) -> int:
    """Workers that take jobs now (a fleet-wide scan: once a second, not per update)."""
    return sum(1 for w in workers.values() if w.get("status") in SERVING_STATUSES)


def heartbeat_stale_after(plugins: Mapping[str, Mapping[str, Any]]) -> float:
    """Twice the gateway's heartbeat interval (from its `workers` plugin options), else 15 s."""
    plugin = plugins.get("workers") or {}
    for arg in plugin.get("args", ()):
        if arg.get("id") == "heartbeat_interval" and arg.get("value"):
            with contextlib.suppress(ValueError):
                return 2 * parse_duration(str(arg["value"]))
    return DEFAULT_STALE_AFTER
