"""Run one or many workers in this process until stopped or drained (what the CLI calls).

The first SIGTERM/SIGINT (or `stop` being set) drains every worker: each tells the gateway
it is draining, finishes its in-flight jobs (up to the drain timeout) and closes with 1000.
A second signal stops at once, cancelling whatever is still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from gatewaytui.workers.backend import Backend
from gatewaytui.workers.client import WorkerClient
from gatewaytui.workers.relay import RelayBackend
from gatewaytui.workers.settings import WorkerSettings, redact_url
from gatewaytui.workers.simulated import SimulatedBackend

log = logging.getLogger("gatewaytui.workers.runner")

EXIT_OK = 0
EXIT_GAVE_UP = 1
EXIT_CONFIG = 2
EXIT_FORCED = 130


def build_backend(settings: WorkerSettings) -> Backend:
    """The backend `settings` asks for: simulated or relay."""
    if settings.upstream is not None:
        return RelayBackend(settings.upstream)
    if settings.simulate is not None:
        return SimulatedBackend(settings.simulate)
    raise ValueError("worker settings need either simulate or upstream")


def build_clients(settings: WorkerSettings, backend: Backend) -> list[WorkerClient]:
    """One client per identity (`count` of them), all sharing `backend`."""
    return [
        WorkerClient(settings, backend, worker_id=worker_id, name=name)
        for worker_id, name in settings.worker_identities()
    ]


async def run_workers(
    settings: WorkerSettings,
    stop: asyncio.Event | None = None,
    *,
    install_signal_handlers: bool = False,
    backend: Backend | None = None,
) -> int:
    """Run `settings.count` workers until `stop` is set, a signal arrives, or all give up.

    Setting `stop` (or the first SIGTERM/SIGINT when `install_signal_handlers`) drains
    gracefully; a second signal stops at once. Returns 0 when every worker ended cleanly,
    1 when one gave up reconnecting, 2 on a configuration error, 130 after a forced stop.
    """
    backend = backend or build_backend(settings)
    clients = build_clients(settings, backend)
    stop = stop or asyncio.Event()
    force = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []

    def on_signal(signum: signal.Signals) -> None:
        if not stop.is_set():
            log.warning(
                "received %s: draining %d worker(s) (send it again to exit at once)",
                signum.name,
                len(clients),
            )
            stop.set()
        else:
            log.warning("received %s again: stopping now", signum.name)
            force.set()

    if install_signal_handlers:
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, on_signal, signum)
                installed.append(signum)

    log.info(
        "starting %d %s worker(s) for %s",
        len(clients),
        type(backend).__name__,
        redact_url(clients[0].url),
    )
    forced = False
    try:
        async with backend:
            for client in clients:
                await client.start()
            all_done = asyncio.ensure_future(asyncio.gather(*(c.wait() for c in clients)))
            stop_wait = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({all_done, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                if not all_done.done():
                    draining = asyncio.ensure_future(asyncio.gather(*(c.drain() for c in clients)))
                    force_wait = asyncio.ensure_future(force.wait())
                    await asyncio.wait({draining, force_wait}, return_when=asyncio.FIRST_COMPLETED)
                    if not draining.done():
                        forced = True
                        await asyncio.gather(*(c.stop() for c in clients))
                    force_wait.cancel()
                    await asyncio.gather(draining, return_exceptions=True)
                await all_done
            finally:
                stop_wait.cancel()
                if not all_done.done():
                    await asyncio.gather(*(c.stop() for c in clients), return_exceptions=True)
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
    if forced:
        return EXIT_FORCED
    codes = [c.exit_code for c in clients]
    return max(codes, default=EXIT_OK)
