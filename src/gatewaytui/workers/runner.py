"""Run one or many workers in this process until stopped or drained (what the CLI calls).

The first SIGTERM/SIGINT (or `stop` being set) drains every worker: each tells the gateway
it is draining, finishes its in-flight jobs (up to the drain timeout) and closes with 1000.
A second signal stops at once, cancelling whatever is still running.
"""

from __future__ import annotations

import asyncio
import logging

from gatewaytui.shared.text import plural
from gatewaytui.workers.dial_out import (
    EXIT_CONFIG,
    EXIT_FORCED,
    EXIT_GAVE_UP,
    EXIT_OK,
    drain_on_signals,
    run_until_stopped,
)
from gatewaytui.workers.gateway_link import WorkerClient
from gatewaytui.workers.job_handler import JobHandler
from gatewaytui.workers.openai_relay import RelayHandler
from gatewaytui.workers.settings import WorkerSettings, redact_url
from gatewaytui.workers.simulated import SimulatedHandler

log = logging.getLogger("gatewaytui.workers.runner")

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FORCED",
    "EXIT_GAVE_UP",
    "EXIT_OK",
    "build_clients",
    "build_handler",
    "run_workers",
]


def build_handler(settings: WorkerSettings) -> JobHandler:
    """The job handler `settings` asks for: simulated or relay."""
    if settings.upstream is not None:
        return RelayHandler(settings.upstream)
    if settings.simulate is not None:
        return SimulatedHandler(settings.simulate)
    raise ValueError("worker settings need either simulate or upstream")


def build_clients(settings: WorkerSettings, handler: JobHandler) -> list[WorkerClient]:
    """One client per identity (`count` of them), all sharing `handler`."""
    return [
        WorkerClient(settings, handler, worker_id=worker_id, name=name)
        for worker_id, name in settings.worker_identities()
    ]


async def run_workers(
    settings: WorkerSettings,
    stop: asyncio.Event | None = None,
    *,
    install_signal_handlers: bool = False,
    handler: JobHandler | None = None,
) -> int:
    """Run `settings.count` workers until `stop` is set, a signal arrives, or all give up.

    Setting `stop` (or the first SIGTERM/SIGINT when `install_signal_handlers`) drains
    gracefully; a second signal stops at once. Returns 0 when every worker ended cleanly,
    1 when one gave up reconnecting, 2 on a configuration error, 130 after a forced stop.
    """
    handler = handler or build_handler(settings)
    clients = build_clients(settings, handler)
    stop = stop or asyncio.Event()
    force = asyncio.Event()
    log.info(
        "starting %s (%s) for %s",
        plural(len(clients), "worker"),
        type(handler).__name__,
        redact_url(clients[0].url),
    )
    what = plural(len(clients), "worker")
    with drain_on_signals(stop, force, what, enabled=install_signal_handlers):
        async with handler:
            return await run_until_stopped(clients, stop, force)
