"""Small text helpers shared by every layer's error messages."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, choices: Iterable[str], form: str = " (did you mean {!r}?)") -> str:
    """A hint naming the closest of `choices` to a mistyped `word`, or "" if none is close.

    `form` places the suggestion in the caller's sentence (the config file's messages say
    "; did you mean 'x'?", the gateway's options " (did you mean 'x'?)").
    """
    close = difflib.get_close_matches(word, list(choices), n=1)
    return form.format(close[0]) if close else ""


def plural(count: int, word: str, many: str | None = None) -> str:
    """`1 job`, `2 jobs`, `0 workers`: English, never `job(s)` (`many` for irregular words)."""
    return f"{count} {word if count == 1 else (many or word + 's')}"


def http_error_text(status: int, message: str) -> str:
    """`HTTP 401: bad token`, without doubling a prefix the message already has
    (`HTTP 401: HTTP 401` when the body gave nothing but the status)."""
    prefix = f"HTTP {status}"
    message = message.strip()
    if not message or message == prefix:
        return prefix
    if message.startswith(prefix + ":") or message.startswith(prefix + " "):
        return message
    return f"{prefix}: {message}"
