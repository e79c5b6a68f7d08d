"""Slow and idle connections end: a header deadline and a connection cap in uvicorn's HTTP
protocol (the part of a request no ASGI middleware sees).

- Headers: a connection must deliver a request's complete headers within
  `server.header_timeout` of opening (or of its previous answer, on keep-alive); one that
  dribbles or idles is closed. Bodies are timed by the ASGI guard (`http_guard.py`).
- Connections: at most `server.max_connections` open at once (HTTP and WebSocket alike),
  never more than the file-descriptor limit minus a reserve. One over the cap makes room by
  closing the connection that has waited longest for request headers (idle, dribbling, or
  idle keep-alive): a flood of idle connections only evicts itself, and `/healthz` (whose
  headers arrive at once) still gets in. Only when every connection is busy with a request
  is the new one closed as soon as it is accepted. A flood cannot starve the process or
  the log of descriptors.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import resource
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gatewaytui.gateway.log_limits import RateLimitedLog

log = RateLimitedLog(logging.getLogger("gatewaytui.gateway.http"))

FD_RESERVE = 64  # descriptors kept for files, the store, outgoing calls
# asyncio accepts up to `backlog` sockets per readiness of the listening socket, and counts
# them (connection_made) only a few loop turns later: the cap keeps room for three batches,
# so a burst of connections never reaches the descriptor limit (EMFILE) before it is counted.
ACCEPT_BACKLOG = 128
ACCEPT_BURST = 3 * ACCEPT_BACKLOG
LISTEN_QUEUE = 2048  # the kernel's queue of connections not yet accepted (uvicorn's default)


def raise_nofile_limit() -> int:
    """Raise this process's soft file-descriptor limit to its hard limit (as Go's runtime
    does): a default soft limit of 1,024 would otherwise cap connections needlessly low.
    Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def connection_cap(configured: int) -> int:
    """`configured`, but below the process's file-descriptor limit, minus a reserve and
    room for a burst of accepted sockets not yet counted."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return configured
    return max(min(configured, soft - FD_RESERVE - ACCEPT_BURST), 1)


class _Stats:
    refused = 0
    evicted = 0
    header_timeouts = 0


stats = _Stats()


ON_DISCONNECT = "gatewaytui.on_disconnect"
"""Scope key: the request's `HeadJoiner`, whose `watch(hook)` has the protocol call `hook`
when the client's connection is lost before the answer is complete — a handler's way to
notice a disconnect without a task waiting on `receive()` (`when_client_leaves`)."""


def when_client_leaves(scope: Any, receive: Any, hook: Callable[[], None]) -> Callable[[], object]:
    """Call `hook` once the HTTP client is gone; returns what stops watching. The gateway's
    protocol calls back (`ON_DISCONNECT`: no task per request); under another server one
    task waits on `receive()` for `http.disconnect`."""
    joiner: HeadJoiner | None = scope.get(ON_DISCONNECT)
    if joiner is not None:
        joiner.watch(hook)
        return functools.partial(joiner.unwatch, hook)

    async def wait() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        hook()

    return asyncio.ensure_future(wait()).cancel


# A streamed answer's head waits this long for the first chunk to travel with it (a fast
# upstream's first chunk is a few milliseconds away); after that it goes alone.
STREAM_HEAD_HOLD_S = 0.02


class HeadJoiner:
    """A request cycle's transport that holds the response head until the first body write
    (or the end of the loop turn, whichever is first; for a streamed answer up to
    `STREAM_HEAD_HOLD_S`), so an answer whose body follows at once — every non-stream answer,
    a stream whose first chunk is ready — leaves in one socket send instead of two. Each send
    wakes the peer; profiles of the gateway under load had 20-27 % of samples in writes."""

    __slots__ = ("_cycle", "_held", "_hooks", "_loop", "_state", "_transport", "gone")

    def __init__(self, transport: Any, cycle: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._cycle = cycle
        self._loop = loop
        self._held = b""
        self._state = 0  # 0: head not written yet, 1: head held, 2: head gone
        self._hooks: list[Callable[[], None]] = []  # ON_DISCONNECT
        self.gone = False

    def watch(self, hook: Callable[[], None]) -> None:
        """Call `hook` once the client is gone (soon, if it already is)."""
        if self.gone:
            self._loop.call_soon(hook)
        else:
            self._hooks.append(hook)

    def unwatch(self, hook: Callable[[], None]) -> None:
        with contextlib.suppress(ValueError):
            self._hooks.remove(hook)

    def lost(self) -> None:
        """The connection is gone before the answer was complete: tell the watchers."""
        self.gone = True
        hooks, self._hooks = self._hooks, []
        for hook in hooks:
            hook()

    def write(self, data: bytes) -> None:
        state = self._state
        if state == 1:
            self._state = 2
            data = self._held + data
            self._held = b""
        elif state == 0 and self._cycle.response_started:  # uvicorn writes the head
            self._state = 1
            self._held = data
            if self._cycle.chunked_encoding:  # a stream: its first chunk may be a moment away
                self._loop.call_later(STREAM_HEAD_HOLD_S, self._flush)
            else:
                self._loop.call_soon(self._flush)
            return
        self._transport.write(data)

    def _flush(self) -> None:
        if self._state == 1:
            self._state = 2
            held, self._held = self._held, b""
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header deadline and a connection cap."""

    header_timeout = 10.0
    cap = 1000
    # Connections waiting for request headers, oldest first (one dict per server class).
    waiting: OrderedDict[GuardedHttpProtocol, None] = OrderedDict()
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        if len(self.connections) > self.cap and not self._evict_oldest_waiting():
            stats.refused += 1
            log.warning("cap", "connection from %s refused: %d open (server.max_connections)",
                        self.client, len(self.connections) - 1)  # fmt: skip
            self.connections.discard(self)
            transport.abort()
            return
        self._arm()

    def _evict_oldest_waiting(self) -> bool:
        """Over the cap: close the connection that has waited longest for headers."""
        if not self.waiting:
            return False
        oldest, _ = self.waiting.popitem(last=False)
        oldest._disarm()
        stats.evicted += 1
        log.info("evict", "connection from %s closed to make room: no request headers "
                 "yet (server.max_connections)", oldest.client)  # fmt: skip
        self.connections.discard(oldest)
        oldest.transport.abort()
        return True

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)
            self.waiting[self] = None

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
            self.waiting.pop(self, None)

    def _headers_late(self) -> None:
        self._header_timer = None
        self.waiting.pop(self, None)
        if not self.transport.is_closing():
            stats.header_timeouts += 1
            log.info("headers", "connection from %s closed: no complete request headers "
                     "within %gs", self.client, self.header_timeout)  # fmt: skip
            self.transport.close()

    def on_message_begin(self) -> None:
        self._arm()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.transport is self.transport:  # a new request's cycle
            joiner = HeadJoiner(self.transport, cycle, self.loop)
            cycle.transport = joiner  # type: ignore[assignment]
            cycle.scope[ON_DISCONNECT] = joiner  # type: ignore[literal-required]

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            self._arm()  # the next request's headers are due within the timeout too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        cycle = self.cycle
        super().connection_lost(exc)
        if cycle is not None and cycle.disconnected and isinstance(cycle.transport, HeadJoiner):
            cycle.transport.lost()


def guarded_protocol(header_timeout: float, max_connections: int) -> type[asyncio.Protocol]:
    """The protocol class for one server: its header timeout and connection cap."""
    attrs = {
        "header_timeout": header_timeout,
        "cap": connection_cap(max_connections),
        "waiting": OrderedDict(),
    }
    return type("GuardedHttpProtocol", (GuardedHttpProtocol,), attrs)
