"""Cell formatting and client-side rates: what operators read in the columns."""

from __future__ import annotations

import pytest
from rich.text import Text

from gatewaytui.tui.formatting import age, bar, coarse_age, count, status_text
from gatewaytui.tui.views.workers import TokenRates


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0, "0s"), (59, "59s"), (61, "1m01s"), (3600, "1h00m"), (90061, "1d01h"), (-5, "0s")],
)
def test_age(seconds, expected):
    assert age(seconds) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"), [(5, "5s"), (61, "1m"), (119, "1m"), (3700, "1h01m")]
)
def test_coarse_age_changes_once_a_minute(seconds, expected):
    assert coarse_age(seconds) == expected


@pytest.mark.parametrize(
    ("n", "expected"), [(999, "999"), (1234, "1.2k"), (5_600_000, "5.6M"), (None, "-")]
)
def test_count(n, expected):
    assert count(n) == expected


def test_bar_is_readable_without_colour():
    assert bar(3, 4, 8) == "██████░░  75%"
    assert bar(1, 0) == "-"


def test_status_is_glyph_and_word():
    text = status_text("not_ready")
    assert isinstance(text, Text) and text.plain == "✖ not ready"


def test_token_rate_averages_stepwise_counters():
    rates = TokenRates(window=10)
    tokens, now = 0, 0.0
    for step in range(80):  # 100 tokens land every 2 s: 50 tokens/s
        now += 0.25
        if step % 8 == 7:
            tokens += 100
        rates.observe("w", tokens, now)
    assert rates.current("w", now) == pytest.approx(50, rel=0.15)
    assert rates.current("w", now + 60) == 0.0  # no news for long: not producing
    rates.observe("w", 10, now + 1)  # counter went back: a new worker under the same id
    assert rates.current("w", now + 1) == 0.0
