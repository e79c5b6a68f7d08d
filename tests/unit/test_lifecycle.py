"""`shared.lifecycle`: the `async with` start/close and the change listeners that the job
handlers, the MCP upstreams and the worker client share."""

from __future__ import annotations

import logging

import pytest

from gatewaytui.shared.lifecycle import Listeners, Started


class Part(Started):
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def start(self) -> None:
        self.calls.append("start")

    async def close(self) -> None:
        self.calls.append("close")


async def test_started_closes_even_when_the_block_raises():
    part = Part()
    with pytest.raises(RuntimeError):
        async with part as entered:
            assert entered is part and part.calls == ["start"]
            raise RuntimeError("inside")
    assert part.calls == ["start", "close"]


def test_a_failing_listener_is_logged_and_the_others_are_still_told(caplog):
    listeners = Listeners("the test's state")
    told: list[str] = []

    def broken() -> None:
        raise ValueError("boom")

    listeners.subscribe(lambda: told.append("first"))
    listeners.subscribe(broken)
    unsubscribe = listeners.subscribe(lambda: told.append("last"))
    with caplog.at_level(logging.ERROR):
        listeners.notify()
    assert told == ["first", "last"]
    assert "a listener of the test's state failed" in caplog.text
    unsubscribe()
    unsubscribe()  # twice is harmless
    listeners.notify()
    assert told == ["first", "last", "first"]
