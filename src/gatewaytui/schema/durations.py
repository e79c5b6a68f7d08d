"""Durations as operators write them (`90s`, `5m`, `1h30m`, `250ms`) — shared by the option
parser, the CLI and the panel, so `5m` means the same thing everywhere. Pure functions."""

from __future__ import annotations

import re

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds from `90s`, `5m`, `1h30m`, `250ms` or a bare number of seconds."""
    raw = text.strip().lower()
    if not raw:
        raise ValueError("empty duration")
    try:
        value = float(raw)
    except ValueError:
        pos, total = 0, 0.0
        for match in _DURATION_PART.finditer(raw):
            if match.start() != pos:
                break
            total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
            pos = match.end()
        if pos != len(raw) or pos == 0:
            raise ValueError(f"not a duration: {text!r}") from None
        return total
    if value < 0:
        raise ValueError("negative duration")
    return value


def format_duration(seconds: float) -> str:
    """The shortest of `250ms`, `90s`, `5m`, `1h30m` that states `seconds` exactly."""
    if seconds < 1 and seconds != 0:
        return f"{round(seconds * 1000)}ms"
    whole = int(seconds)
    if whole != seconds:
        return f"{seconds:g}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs else "",
    ]
    return "".join(parts) or "0s"
