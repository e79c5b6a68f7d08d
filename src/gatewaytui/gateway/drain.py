"""Draining the whole server: refuse new work, let jobs (and MCP calls) in flight finish up to
a timeout, then optionally exit (SIGTERM). Undrain cancels it."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gatewaytui.gateway.events import EventLog
from gatewaytui.gateway.hub import StateHub
from gatewaytui.gateway.jobs import DrainingError, Job
from gatewaytui.schema.api import ActionResult
from gatewaytui.shared.text import plural

if TYPE_CHECKING:
    from gatewaytui.gateway.config import GatewayConfig
    from gatewaytui.gateway.jobs import Waiter


@dataclass
class DrainState:
    """Whether the server drains, since when and until when (read by the state and routing)."""

    draining: bool = False
    started_at: float | None = None
    deadline: float | None = None

    def refuse_new_work(self) -> None:
        if self.draining:
            raise DrainingError("server is draining; not accepting new requests")


class ServerDrain:
    """The server-wide drain and its exit; `on_drained` / `on_undrained` are the server's."""

    def __init__(
        self,
        config: GatewayConfig,
        state: DrainState,
        *,
        hub: StateHub,
        events: EventLog,
        jobs: dict[str, Job],
        waiters: deque[Waiter],
        mcp_calls: Callable[[], int],
    ) -> None:
        self.config = config
        self.state = state
        self.hub = hub
        self.events = events
        self.jobs = jobs
        self.waiters = waiters
        self.mcp_calls = mcp_calls
        self.exit_after_drain = False
        self.on_drained: Callable[[], None] | None = None
        self.on_undrained: Callable[[], None] | None = None  # the server resets its signals
        self.task: asyncio.Task[None] | None = None

    def drain(self, timeout: float | None = None, *, exit_when_done: bool = False) -> ActionResult:
        timeout = self.config.drain_timeout if timeout is None else timeout
        state = self.state
        if state.draining:
            return _result("server is already draining", inflight=len(self.jobs))
        state.draining = True
        state.started_at = time.time()
        state.deadline = state.started_at + timeout
        self.hub.touch_server()
        for waiter in list(self.waiters):
            if not waiter.future.done():
                waiter.future.set_exception(DrainingError("server is draining"))
        self.waiters.clear()
        self.events.add(
            "server_drain",
            f"server draining: {plural(len(self.jobs), 'job')} in flight, timeout {timeout:g}s",
            level="warning",
        )
        self.exit_after_drain = self.exit_after_drain or exit_when_done
        self.task = asyncio.get_running_loop().create_task(self._finish(timeout))
        return _result("server is draining", inflight=len(self.jobs))

    async def _finish(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (self.jobs or self.mcp_calls()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        left = len(self.jobs) + self.mcp_calls()  # MCP calls in flight finish too
        self.events.add(
            "server_drained",
            "server drained" if not left else f"drain timeout with {plural(left, 'job')} left",
            level="warning" if left else "info",
        )
        if self.exit_after_drain:
            self._exit()

    def begin_exit_drain(self) -> None:
        """SIGTERM: drain (if not already) and exit once drained."""
        self.exit_after_drain = True
        if not self.state.draining:
            self.drain()
        elif self.task is None or self.task.done():
            self._exit()

    def _exit(self) -> None:
        if self.on_drained is not None:
            self.on_drained()

    def undrain(self) -> ActionResult:
        state = self.state
        if not state.draining:
            return _result("server is not draining", target=None)
        if self.task is not None:
            self.task.cancel()
            self.task = None
        state.draining = False
        self.exit_after_drain = False
        state.started_at = state.deadline = None
        self.hub.touch_server()
        if self.on_undrained is not None:
            self.on_undrained()
        self.events.add("server_undrain", "server drain cancelled; accepting requests")
        # No target, as before the typed result: `/api/server/undrain` has no path parameter.
        return _result("server is accepting requests again", target=None)

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()


def _result(message: str, *, target: str | None = "server", **details: int) -> ActionResult:
    return ActionResult(message=message, target=target, details=details)
