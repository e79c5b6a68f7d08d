"""A real gateway on a real loopback port, run on its own event loop in a background thread,
so tests can drive it with blocking clients (the official `openai` SDK, httpx, websockets)."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from gatewaytui.gateway.config import GatewayConfig
from gatewaytui.gateway.core import Gateway
from gatewaytui.gateway.server import DrainingServer, bind_socket, make_server
from support.loop_thread import run_loop
from support.waiting import WAIT_S, uvicorn_started

T = TypeVar("T")


class RunningGateway:
    def __init__(self, config: GatewayConfig, *, port: int = 0, open_default: bool = True) -> None:
        # Tests run the operator API open (the explicit `server.open`) unless they ask for
        # the secure default (`make_gateway(server__open="false")`, open_default=False).
        if open_default and not (config.operator_tokens or config.viewer_tokens):
            config = dataclasses.replace(config, open=True)
        self.config = config
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=run_loop, args=(self.loop,), daemon=True)
        self._thread.start()
        self.sock = bind_socket("127.0.0.1", port)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.gateway: Gateway = self.call(self._make_gateway)
        self.server: DrainingServer = make_server(self.gateway, handle_signals=False)
        self._serve: Future[None] = asyncio.run_coroutine_threadsafe(
            self.server.serve(sockets=[self.sock]), self.loop
        )
        self.call(lambda: uvicorn_started(self.server, self._serve))

    async def _make_gateway(self) -> Gateway:
        gateway = Gateway(self.config)
        gateway.listen = f"127.0.0.1:{self.sock.getsockname()[1]}"
        return gateway

    def call(self, fn: Callable[[], Coroutine[Any, Any, T]], timeout: float = 30) -> T:
        """Run a coroutine function on the gateway's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(fn(), self.loop).result(timeout)

    def sync(self, fn: Callable[[], T], timeout: float = 30) -> T:
        """Run a plain function on the gateway's loop (safe access to live state)."""

        async def wrapper() -> T:
            return fn()

        return self.call(wrapper, timeout)

    def wait_for(self, predicate: Callable[[Gateway], bool], timeout: float = WAIT_S) -> None:
        """Poll a condition on the gateway's loop until it holds (state is polled, not slept)."""

        async def poll() -> None:
            while not predicate(self.gateway):
                await asyncio.sleep(0.01)

        self.call(lambda: asyncio.wait_for(poll(), timeout), timeout + 1)

    def spawn(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        if not self._serve.done():
            self.server.should_exit = True
            try:
                self._serve.result(15)
            except Exception:
                self.server.force_exit = True
        if self._thread.is_alive():  # a second stop() finds the loop closed
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
        self.sock.close()


class SimFleet:
    """Simulated workers (the shipped ones) running on the gateway's loop over real sockets."""

    def __init__(self, gw: RunningGateway, settings: Any) -> None:
        from gatewaytui.workers.runner import run_workers

        self.gw = gw
        self.ids = [worker_id for worker_id, _ in settings.worker_identities()]
        self._stop: asyncio.Event = gw.call(self._make_event)
        self._run = gw.spawn(run_workers(settings, self._stop))
        gw.wait_for(
            lambda g: all(
                (w := g.registry.get(i)) is not None and w.gone_at is None and w.heard_from
                for i in self.ids
            )
        )

    @staticmethod
    async def _make_event() -> asyncio.Event:
        return asyncio.Event()

    def stop(self) -> int:
        self.gw.loop.call_soon_threadsafe(self._stop.set)
        return self._run.result(30)
