"""Two small pieces the long-lived parts share: `Started` (an `async with` that starts the
part and closes it on the way out) and `Listeners` (callbacks told that something changed).

The workers' job handlers, the MCP relay's upstreams, the worker client and the operator API
client follow them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType
from typing import Self

log = logging.getLogger("gatewaytui.shared.lifecycle")

Listener = Callable[[], None]


class Started:
    """`async with part:` awaits `part.start()` on the way in and `part.close()` on the way
    out, however the block ends. Both default to doing nothing."""

    async def start(self) -> None:
        """Acquire what the part needs (connections, tasks). Idempotent."""

    async def close(self) -> None:
        """Release what `start` acquired."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class Listeners:
    """Callbacks to tell that something changed; one that raises is logged, and the others
    are still told."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Tell `listener` of every change from now on; returns the unsubscribe."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def notify(self) -> None:
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                log.exception("a listener of %s failed", self._what)
