"""Label selectors: Kubernetes' syntax, one parser, clear errors."""

from __future__ import annotations

import pytest

from gatewaytui.shared.selector import SelectorError, parse_selector

A100_EU = {"gpu": "a100", "zone": "eu-west-1a", "pool": "chat-large"}
H100_US = {"gpu": "H100", "zone": "us-east-1", "spot": "true"}
BARE: dict[str, str] = {}


@pytest.mark.parametrize(
    ("text", "matching"),
    [
        ("gpu=H100", [H100_US]),
        ("gpu==H100", [H100_US]),
        ("gpu!=H100", [A100_EU, BARE]),  # != matches a missing key, as in Kubernetes
        ("zone in (eu-west-1a, us-east-1)", [A100_EU, H100_US]),
        ("zone in (eu-west-1a)", [A100_EU]),
        ("zone notin (eu-west-1a)", [H100_US, BARE]),
        ("spot", [H100_US]),
        ("!spot", [A100_EU, BARE]),
        ("gpu=a100,pool=chat-large", [A100_EU]),
        (" gpu = a100 , zone in ( eu-west-1a ) ", [A100_EU]),
        ("gpu in (a100,H100),!spot", [A100_EU]),
    ],
)
def test_matching(text: str, matching: list[dict[str, str]]) -> None:
    selector = parse_selector(text)
    assert [labels for labels in (A100_EU, H100_US, BARE) if selector.matches(labels)] == matching


def test_round_trip_text() -> None:
    assert (
        str(parse_selector("gpu==H100, zone in (a,b),!spot,x")) == "gpu=H100,zone in (a,b),!spot,x"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty selector"),
        ("   ", "empty selector"),
        ("gpu=", "expected a value at the end of 'gpu='"),
        ("zone in (a,b", "expected ',' or ')' at the end"),
        ("zone in a", "expected '(' after in/notin at column 9, found 'a'"),
        ("zone in ()", "expected a value at column 10, found ')'"),
        ("gpu=H100 zone=a", "expected ',' between requirements at column 10, found 'zone'"),
        ("gpu > 3", "unexpected '>' at column 5"),
        ("gpu=a,", "expected a label key at the end"),
        ("=a", "expected a label key at column 1, found '='"),
        ("gpu ~ a", "unexpected '~' at column 5"),
        ("gpu foo", "expected '=', '!=', 'in', 'notin' or ',' at column 5, found 'foo'"),
    ],
)
def test_errors_say_what_and_where(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as caught:
        parse_selector(text)
    assert message in str(caught.value)


def test_no_labels_never_matches_a_positive_requirement() -> None:
    assert not parse_selector("gpu=H100").matches(None)
    assert parse_selector("!gpu").matches(None)
