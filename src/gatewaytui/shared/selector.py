"""Kubernetes-style label selectors (`gpu=H100,zone in (a,b),!spot`), parsed once, matched often.

The grammar is Kubernetes' own (a comma-separated AND of requirements):

    key=value   key==value   key!=value        equality (`!=` also matches a missing key)
    key in (a,b)   key notin (a,b)             set membership (`notin` matches a missing key)
    key   !key                                 the key exists / does not exist

Keys and values are label-ish words (letters, digits, `-_./`); spaces around tokens are
ignored. A bad selector raises `SelectorError` naming what was expected and where
(`zone in (a,b` -> "expected ',' or ')' at column 12"). Pure: no I/O, shared by every layer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Requirement", "Selector", "SelectorError", "parse_selector"]

_TOKEN = re.compile(r"\s*(?:(==|!=|=|!|\(|\)|,)|([A-Za-z0-9][A-Za-z0-9_.\-/]*))")
_WORD_OPS = {"in", "notin"}


class SelectorError(ValueError):
    """A selector that does not parse: the message says what was expected and where."""


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        if self.op == "exists":
            return value is not None
        if self.op == "!exists":
            return value is None
        if self.op in ("=", "in"):
            return value is not None and value in self.values
        return value is None or value not in self.values  # "!=", "notin"

    def __str__(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "!exists":
            return f"!{self.key}"
        if self.op in ("in", "notin"):
            return f"{self.key} {self.op} ({','.join(self.values)})"
        return f"{self.key}{self.op}{self.values[0]}"


@dataclass(frozen=True)
class Selector:
    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """True when every requirement holds (an empty selector matches nothing: draining
        "everything" by accident is what this guards against)."""
        if not self.requirements:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


class _Tokens:
    def __init__(self, text: str) -> None:
        self.text = text
        self.items: list[tuple[str, str, int]] = []  # (kind, text, column)
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            match = _TOKEN.match(text, pos)
            if match is None or match.end() == pos:
                column = pos + len(text[pos:]) - len(text[pos:].lstrip()) + 1
                raise SelectorError(
                    f"unexpected {text[column - 1]!r} at column {column} "
                    "(keys and values are letters, digits, '-', '_', '.', '/')"
                )
            symbol, word = match.groups()
            column = match.start(1 if symbol else 2) + 1
            self.items.append(("op" if symbol else "word", symbol or word, column))
            pos = match.end()
        self.index = 0

    def peek(self) -> tuple[str, str, int] | None:
        return self.items[self.index] if self.index < len(self.items) else None

    def take(self, expected: str) -> tuple[str, str, int]:
        token = self.peek()
        if token is None:
            raise SelectorError(f"expected {expected} at the end of {self.text!r}")
        self.index += 1
        return token

    def fail(self, expected: str, token: tuple[str, str, int] | None) -> SelectorError:
        if token is None:
            return SelectorError(f"expected {expected} at the end of {self.text!r}")
        return SelectorError(f"expected {expected} at column {token[2]}, found {token[1]!r}")


def _values(tokens: _Tokens) -> tuple[str, ...]:
    token = tokens.take("'('")
    if token[1] != "(":
        raise tokens.fail("'(' after in/notin", token)
    values: list[str] = []
    while True:
        token = tokens.take("a value")
        if token[0] != "word":
            raise tokens.fail("a value", token)
        values.append(token[1])
        token = tokens.take("',' or ')'")
        if token[1] == ")":
            return tuple(values)
        if token[1] != ",":
            raise tokens.fail("',' or ')'", token)


def _requirement(tokens: _Tokens) -> Requirement:
    token = tokens.take("a label key")
    if token[1] == "!":
        negated = tokens.take("a label key after '!'")
        if negated[0] != "word":
            raise tokens.fail("a label key after '!'", negated)
        return Requirement(negated[1], "!exists")
    if token[0] != "word":
        raise tokens.fail("a label key", token)
    key = token[1]
    following = tokens.peek()
    if following is None or following[1] == ",":
        return Requirement(key, "exists")
    tokens.index += 1
    if following[1] in ("=", "==", "!="):
        value = tokens.take("a value")
        if value[0] != "word":
            raise tokens.fail(f"a value after {following[1]!r}", value)
        return Requirement(key, "!=" if following[1] == "!=" else "=", (value[1],))
    if following[0] == "word" and following[1] in _WORD_OPS:
        return Requirement(key, following[1], _values(tokens))
    raise tokens.fail("'=', '!=', 'in', 'notin' or ','", following)


def parse_selector(text: str) -> Selector:
    """`gpu=H100, zone in (a,b)` -> a `Selector`; `SelectorError` says what is wrong."""
    tokens = _Tokens(text)
    if not tokens.items:
        raise SelectorError("empty selector: give at least one requirement, e.g. gpu=H100")
    requirements = [_requirement(tokens)]
    while tokens.peek() is not None:
        comma = tokens.take("','")
        if comma[1] != ",":
            raise tokens.fail("',' between requirements", comma)
        requirements.append(_requirement(tokens))
    return Selector(tuple(requirements))
