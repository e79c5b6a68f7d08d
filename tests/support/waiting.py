"""Bounded polls: tests wait for the thing they check, never for a fixed time.

`until` polls under a Textual Pilot (the app keeps running between polls), `wait_until`
blocks a plain thread, `poll_until` runs on an asyncio loop, and `uvicorn_started` is the
one way to wait for a uvicorn server (uvicorn exposes only its `started` flag).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

# The bound on waiting for something that should happen. A wait ends as soon as it happens, so
# a generous bound costs nothing when tests pass and keeps a busy machine (other test runs,
# builds) from failing them; a wait for something that must NOT happen uses its own short window.
WAIT_S = 20.0


class _Serving(Protocol):
    """A task or future serving uvicorn: if it ends before `started`, its error is the reason."""

    def done(self) -> bool: ...
    def result(self) -> Any: ...


async def until(
    pilot: Any, predicate: Callable[[], bool], timeout: float = WAIT_S, what: str = "condition"
) -> None:
    """Poll `predicate` between Pilot pauses (the app processes messages meanwhile)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


def wait_until(
    predicate: Callable[[], bool],
    timeout: float = WAIT_S,
    what: str = "condition",
    interval: float = 0.05,
) -> None:
    """Block until `predicate` holds (polls a server or a process from a test's thread)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


async def poll_until(
    predicate: Callable[[], bool],
    timeout: float = WAIT_S,
    what: str = "condition",
    interval: float = 0.01,
) -> None:
    """Await until `predicate` holds, on the running loop."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


def _check_serving(serving: _Serving | None) -> None:
    if serving is not None and serving.done():
        serving.result()  # raises the server's own error
        raise AssertionError("the server stopped before it started")


async def uvicorn_started(
    server: Any, serving: _Serving | None = None, timeout: float = WAIT_S
) -> None:
    """Await a uvicorn server's `started` on its own loop; fail fast if serving ended."""
    deadline = time.monotonic() + timeout
    while not server.started:
        _check_serving(serving)
        if time.monotonic() > deadline:
            raise AssertionError("uvicorn did not start")
        await asyncio.sleep(0.005)


def uvicorn_started_blocking(
    server: Any, serving: _Serving | None = None, timeout: float = WAIT_S
) -> None:
    """The same from another thread than the server's loop."""
    deadline = time.monotonic() + timeout
    while not server.started:
        _check_serving(serving)
        if time.monotonic() > deadline:
            raise AssertionError("uvicorn did not start")
        time.sleep(0.005)


class ThreadPoller:
    """Calls `poll()` from a daemon thread every `interval` s until it returns True or
    `stop()` is called: for tests that watch something without blocking their own loop."""

    interval = 0.01

    def __init__(self) -> None:
        self._stop = threading.Event()
        self.error: BaseException | None = None  # what `poll()` raised: `stop()` raises it
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def poll(self) -> bool:
        raise NotImplementedError

    def _run(self) -> None:
        try:
            while not self._stop.is_set() and not self.poll():
                self._stop.wait(self.interval)
        except BaseException as exc:  # a watcher that died must not read as "saw nothing"
            self.error = exc

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        if self.error is not None:
            raise self.error
