"""Backend health: probes every `backends.probe_interval` (sooner after an edit or a failed
call), out of routing after `backends.failure_threshold` failures, back when one passes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp

from gatewaytui.gateway.backends import http as backend_http
from gatewaytui.gateway.backends.http import ProbeOutcome
from gatewaytui.gateway.clock import iso
from gatewaytui.gateway.config import GatewayConfig
from gatewaytui.gateway.events import EventLog
from gatewaytui.schema import BackendStatus
from gatewaytui.shared.text import plural

if TYPE_CHECKING:
    from gatewaytui.gateway.backends.records import BackendRecord

log = logging.getLogger("gatewaytui.gateway.backends")

PASSIVE_PROBE_GAP_S = 1.0  # a failing call asks for a probe at most this often


class SharedProbes(Protocol):
    """A fleet's shared probing (gateway/cluster/backends.py): one replica probes a backend
    per interval and shares the result; the others adopt it."""

    async def claim(self, record: BackendRecord) -> float | None:
        """None: this replica probes now. Otherwise another one does: seconds until its turn
        ends (this replica has adopted the shared result meanwhile)."""

    def share(self, record: BackendRecord) -> None:
        """This replica applied a probe result: hand it to the others."""


class BackendHealth:
    """Probes the backends and moves them in and out of routing (through `sync`)."""

    def __init__(
        self,
        config: GatewayConfig,
        records: dict[str, BackendRecord],
        events: EventLog,
        sync: Callable[[BackendRecord], None],
    ) -> None:
        self.interval = config.backends_probe_interval
        self.threshold = config.backends_failure_threshold
        self.cooldown = config.backends_cooldown
        self.records = records
        self.events = events
        self.sync = sync
        self._wake = asyncio.Event()
        self._client: aiohttp.ClientSession | None = None  # the probes'; made on first use
        self._task: asyncio.Task[None] | None = None
        self.shared: SharedProbes | None = None  # set by a fleet (gateway/cluster)

    @property
    def client(self) -> aiohttp.ClientSession:
        if self._client is None:
            self._client = backend_http.make_client()
        return self._client

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._probe_loop(), name="backend-probes"
        )

    async def stop(self) -> None:
        """Cancel the loop and every probe in flight."""
        tasks: list[asyncio.Task[Any]] = [self._task] if self._task is not None else []
        for record in self.records.values():
            if record.probe_task is not None:
                tasks.append(record.probe_task)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self._task = None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    def probe_soon(self, record: BackendRecord) -> None:
        record.next_probe_at = 0.0
        self._wake.set()

    def call_failed(self, record: BackendRecord) -> None:
        """A call could not reach the backend: probe it soon (unless it is cooling down)."""
        if record.deleted or record.out or not record.spec.enabled:
            return
        now = time.time()
        soonest = max(now, (record.last_probe_at or 0.0) + PASSIVE_PROBE_GAP_S)
        if soonest < record.next_probe_at:
            record.next_probe_at = soonest
            self._wake.set()

    async def probe_now(self, record: BackendRecord) -> ProbeOutcome:
        """Probe at once (an operator asked): also in a fleet, whoever holds the turn."""
        while True:
            task = record.probe_task
            if task is None or task.done():
                task = record.probe_task = asyncio.get_running_loop().create_task(
                    self._run_probe(record), name=f"probe-{record.spec.id}"
                )
                task.add_done_callback(lambda _: self._wake.set())
            outcome = await asyncio.shield(task)
            if outcome is not None:
                return outcome  # else a scheduled turn that another replica held: probe now

    async def _scheduled_probe(self, record: BackendRecord) -> ProbeOutcome | None:
        """A probe that fell due; in a fleet, only if this replica holds the backend's turn."""
        if self.shared is not None:
            wait = await self.shared.claim(record)
            if wait is not None:
                record.next_probe_at = max(record.next_probe_at, time.time() + wait)
                return None
        return await self._run_probe(record)

    async def _run_probe(self, record: BackendRecord) -> ProbeOutcome:
        revision = record.revision
        outcome = await backend_http.probe(self.client, record.spec)
        if record.deleted or record.revision != revision:
            return outcome  # the backend changed meanwhile: a fresh probe follows
        self._apply_probe(record, outcome)
        if self.shared is not None:
            self.shared.share(record)
        return outcome

    def _apply_probe(self, record: BackendRecord, outcome: ProbeOutcome) -> None:
        now = outcome.probed_at
        spec_id = record.spec.id
        was_status, was_out = record.status, record.out
        record.last_probe_at = now
        record.latency_ms = outcome.latency_ms
        events = self.events
        if outcome.ok:
            record.status = BackendStatus.HEALTHY
            record.consecutive_failures = 0
            record.last_error = None
            record.last_ok_at = now
            record.out = False
            record.next_retry_at = None
            record.discovered = outcome.models
            record.next_probe_at = now + self.interval
            if was_out:
                events.add("backend_health", f"backend {spec_id} is healthy again: back in routing")
            elif was_status is not BackendStatus.HEALTHY:
                served = len(record.served_models())
                events.add(
                    "backend_health",
                    f"backend {spec_id} is healthy ({plural(served, 'model')}, "
                    f"{outcome.latency_ms} ms)",
                )
        else:
            record.status = BackendStatus.UNHEALTHY
            record.consecutive_failures += 1
            record.last_error = outcome.error
            if record.consecutive_failures >= self.threshold:
                record.out = True
                record.next_retry_at = now + self.cooldown
                record.next_probe_at = record.next_retry_at
                if not was_out:
                    events.add(
                        "backend_health",
                        f"backend {spec_id} left routing after "
                        f"{plural(record.consecutive_failures, 'failed probe')} ({outcome.error}); "
                        f"retry at {iso(record.next_retry_at)}",
                        level="error",
                    )
            else:
                record.next_probe_at = now + self.interval
                if was_status is not BackendStatus.UNHEALTHY:
                    events.add(
                        "backend_health",
                        f"backend {spec_id} probe failed: {outcome.error}",
                        level="warning",
                    )
        self.sync(record)

    async def _probe_loop(self) -> None:
        """Probe every enabled backend when it is due; sleep until the next one is."""
        while True:
            self._wake.clear()
            now = time.time()
            soonest = now + self.interval
            for record in list(self.records.values()):
                if not record.spec.enabled:
                    continue
                running = record.probe_task is not None and not record.probe_task.done()
                if running:
                    continue
                if record.next_probe_at <= now:
                    task = record.probe_task = asyncio.get_running_loop().create_task(
                        self._scheduled_probe(record), name=f"probe-{record.spec.id}"
                    )
                    task.add_done_callback(self._probe_done)
                else:
                    soonest = min(soonest, record.next_probe_at)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(soonest - time.time(), 0.01))

    def _probe_done(self, task: asyncio.Task[ProbeOutcome | None]) -> None:
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("backend probe failed", exc_info=task.exception())
