"""Run the gateway under uvicorn with drain-on-signal: the first SIGTERM/SIGINT drains
(`/readyz` 503, new requests 503, in-flight jobs finish up to the drain timeout) and then
exits; a second signal exits at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Generator
from types import FrameType

import uvicorn

from gatewaytui.gateway import log_limits
from gatewaytui.gateway.app import create_app, ws_max_bytes
from gatewaytui.gateway.core import Gateway
from gatewaytui.gateway.http_limits import (
    ACCEPT_BACKLOG,
    LISTEN_QUEUE,
    guarded_protocol,
    raise_nofile_limit,
)

log = logging.getLogger("gatewaytui.gateway.server")


class EmbeddableServer(uvicorn.Server):
    """uvicorn.Server that leaves the process's signals to the program embedding it when
    `handle_signals` is false (uvicorn would take SIGINT and SIGTERM for itself, and a second
    server in one process, like the demo's simulated backend, would stop alone on them)."""

    def __init__(self, config: uvicorn.Config, *, handle_signals: bool = True) -> None:
        super().__init__(config)
        self.handle_signals = handle_signals

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None]:
        if not self.handle_signals:  # an embedding program (demo, tests) owns the signals
            yield
            return
        with super().capture_signals():
            yield


class DrainingServer(EmbeddableServer):
    """uvicorn.Server whose exit signal drains the gateway first."""

    def __init__(
        self, config: uvicorn.Config, gateway: Gateway, *, handle_signals: bool = True
    ) -> None:
        super().__init__(config, handle_signals=handle_signals)
        self.gateway = gateway
        self._signals = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        gateway.server_drain.on_drained = self._exit_now
        gateway.server_drain.on_undrained = self._reset_signals

    def _exit_now(self) -> None:
        self.should_exit = True

    def _reset_signals(self) -> None:
        """An undrain cancelled the drain a signal began: the next signal drains again."""
        self._signals = 0

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1 or self._loop is None:
            log.warning("second signal: exiting now")
            self.force_exit = True
            self.should_exit = True
            return
        log.warning("signal %s: draining (send it again to exit at once)", sig)
        self._loop.call_soon_threadsafe(self.gateway.begin_exit_drain)

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets=sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        for server in self.servers:  # after asyncio's listen(ACCEPT_BACKLOG)
            for listening in server.sockets:
                widen_listen_queue(listening.fileno())


def widen_listen_queue(fd: int) -> None:
    """The kernel's queue of not-yet-accepted connections, wider than the accept batch:
    asyncio uses one `backlog` for both, and a 128-deep queue drops a connect burst's SYNs
    (a client then waits a 1 s retransmit). Through a duplicate of the descriptor: the
    listening socket is asyncio's."""
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as dup:
        dup.listen(LISTEN_QUEUE)


def make_server(
    gateway: Gateway, *, log_level: str = "warning", handle_signals: bool = True
) -> DrainingServer:
    c = gateway.config
    log_limits.install()  # a flood of bad peers cannot flood the log
    raise_nofile_limit()  # before the connection cap is derived from it
    config = uvicorn.Config(
        create_app(gateway),
        http=guarded_protocol(c.header_timeout, c.max_connections),
        backlog=ACCEPT_BACKLOG,  # also the accept batch the cap leaves room for
        host=c.host,
        port=c.port,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        ws_max_size=ws_max_bytes(c),
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        timeout_graceful_shutdown=3,
        server_header=False,
    )
    return DrainingServer(config, gateway, handle_signals=handle_signals)


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before serving so callers (tests, demo) learn the real port of port 0."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on accepted sockets
    # whose proto says TCP, and accepted sockets inherit the listener's. With 0, every small
    # answer waited on the client's delayed ACK: ~40 ms a request on keep-alive connections.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


async def serve_started(server: uvicorn.Server, sock: socket.socket) -> asyncio.Task[None] | None:
    """Serve on `sock` in a task and wait until uvicorn has started: the task, or None when
    serving ended before it started (a startup error is raised instead)."""
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if serving.done():
            serving.result()
            return None
        await asyncio.sleep(0.01)
    return serving


def run(server: uvicorn.Server) -> None:
    """Serve until stopped: on uvloop where its wheel is installed (uvicorn[standard] brings
    it), else on the stock asyncio loop; `GATEWAYTUI_LOOP=asyncio` keeps the stock loop. Chosen
    by measurement: with the hot path trimmed, a third of the gateway's samples were the event
    loop itself, and uvloop took 7-11 % off the CPU per request (docs/benchmarks.md)."""
    if os.environ.get("GATEWAYTUI_LOOP", "").strip().lower() != "asyncio":
        try:
            import uvloop
        except ImportError:  # no wheel for this platform: the pure loop
            pass
        else:
            uvloop.run(server.serve())
            return
    asyncio.run(server.serve())
