"""The shared text helpers: plurals and HTTP error prefixes read as English."""

from __future__ import annotations

import pytest

from gatewaytui.shared.text import did_you_mean, http_error_text, plural


@pytest.mark.parametrize(
    ("count", "word", "many", "expected"),
    [
        (0, "worker", None, "0 workers"),
        (1, "worker", None, "1 worker"),
        (2, "job", None, "2 jobs"),
        (1, "failed probe", None, "1 failed probe"),
        (3, "replica", None, "3 replicas"),
        (2, "entry", "entries", "2 entries"),
    ],
)
def test_plural(count: int, word: str, many: str | None, expected: str) -> None:
    assert plural(count, word, many) == expected


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("bad token", "HTTP 401: bad token"),
        ("HTTP 401", "HTTP 401"),  # the body said nothing: not "HTTP 401: HTTP 401"
        ("HTTP 401: bad token", "HTTP 401: bad token"),
        ("", "HTTP 401"),
        ("HTTP 4010 odd", "HTTP 401: HTTP 4010 odd"),
    ],
)
def test_http_error_text_never_doubles_the_prefix(message: str, expected: str) -> None:
    assert http_error_text(401, message) == expected


def test_did_you_mean() -> None:
    assert did_you_mean("wokers", ["workers", "jobs"]) == " (did you mean 'workers'?)"
    assert did_you_mean("zzz", ["workers"]) == ""
