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
