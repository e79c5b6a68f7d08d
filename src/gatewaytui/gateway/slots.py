"""Worker slots and the FIFO wait queue: reserve a slot for a model, wait for one when all
are busy, hand freed slots to waiters in order."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable

from gatewaytui.gateway.config import GatewayConfig
from gatewaytui.gateway.drain import DrainState
from gatewaytui.gateway.jobs import (
    Job,
    ModelNotFoundError,
    QueueFullError,
    QueueTimeoutError,
    UpstreamTimeoutError,
    Waiter,
)
from gatewaytui.gateway.live import LiveState
from gatewaytui.gateway.metrics import GatewayMetrics
from gatewaytui.gateway.registry import WorkerRecord, model_family
from gatewaytui.gateway.scheduler import Scheduler


def deadline_error(
    config: GatewayConfig, worker: WorkerRecord | None = None
) -> UpstreamTimeoutError:
    """The request's own timeout ran out, before or after a worker took it."""
    limit = f"the request timeout ({config.request_timeout:g}s)"
    if worker is None:
        return UpstreamTimeoutError(f"no worker took the request within {limit}")
    return UpstreamTimeoutError(f"worker {worker.id} did not finish within {limit}")


class SlotQueue:
    """Slots on workers (through the scheduler) and the queue of requests waiting for one."""

    def __init__(
        self,
        config: GatewayConfig,
        scheduler: Scheduler,
        live: LiveState,
        metrics: GatewayMetrics,
        drain: DrainState,
        knows_model: Callable[[str], bool],
    ) -> None:
        self.config = config
        self.scheduler = scheduler
        self.live = live
        self.metrics = metrics
        self.drain = drain
        self.knows_model = knows_model
        self.waiters: deque[Waiter] = live.waiters

    def check_model(self, model: str) -> None:
        if not self.knows_model(model):
            raise ModelNotFoundError(f"The model {model!r} does not exist or has no worker")

    async def acquire(
        self,
        model: str,
        exclude: frozenset[str] = frozenset(),
        *,
        deadline: float | None = None,
        job: Job | None = None,
    ) -> WorkerRecord:
        """Reserve a slot on a worker for `model`, waiting in the FIFO queue if all are busy.

        The wait ends at `llm.queue_timeout` (503 queue_timeout) or at the request's own
        `deadline` (a `time.monotonic()` value; 504 request_timeout), whichever comes first.
        """
        self.drain.refuse_new_work()
        self.check_model(model)
        wait = self.config.queue_timeout
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise deadline_error(self.config)
            wait = min(wait, remaining)
        worker = self.scheduler.pick(model, exclude)
        if worker is None and exclude and not self._has_alternative(model, exclude):
            exclude = frozenset()
            worker = self.scheduler.pick(model)
        if worker is not None:
            self.live.touch_worker(worker)
            return worker
        if len(self.waiters) >= self.config.queue_size:
            raise QueueFullError(
                f"all workers for {model!r} are busy and the queue is full "
                f"({self.config.queue_size}); retry later"
            )
        return await self._wait(
            Waiter(model, exclude, asyncio.get_running_loop().create_future()), wait, job
        )

    async def _wait(self, waiter: Waiter, wait: float, job: Job | None = None) -> WorkerRecord:
        self.waiters.append(waiter)
        self.live.mark_dirty()
        try:
            worker = await asyncio.wait_for(asyncio.shield(waiter.future), timeout=wait)
        except TimeoutError:
            self._give_back_if_granted(waiter)
            if wait < self.config.queue_timeout:  # the request's deadline came first
                raise deadline_error(self.config) from None
            raise QueueTimeoutError(
                f"no worker for {waiter.model!r} became free within {wait:g}s; retry later"
            ) from None
        except asyncio.CancelledError:  # the client went away while it waited
            self._give_back_if_granted(waiter)
            raise
        finally:
            if not waiter.future.done():
                waiter.future.cancel()
            with contextlib.suppress(ValueError):
                self.waiters.remove(waiter)
            self.live.mark_dirty()
            if job is not None:  # given up or not: the ledger shows how long it waited
                job.queue_wait_s += time.monotonic() - waiter.enqueued
        self.metrics.queue_wait.observe(time.monotonic() - waiter.enqueued)
        return worker

    def _give_back_if_granted(self, waiter: Waiter) -> None:
        """A slot granted at the moment the waiter gave up goes back to the pool."""
        future = waiter.future
        if future.done() and not future.cancelled() and future.exception() is None:
            self.free_slot(future.result())

    def free_slot(self, worker: WorkerRecord) -> None:
        """Give back a slot that was reserved but never used."""
        self.scheduler.release(worker)
        self.live.touch_worker(worker)
        self.pump()

    def _has_alternative(self, model: str, exclude: frozenset[str]) -> bool:
        keys = ["m:" + model]
        if self.config.model_family_matching:
            keys.append("f:" + model_family(model))
        return any(wid not in exclude for key in keys for wid in self.scheduler.members(key))

    def pump(self) -> None:
        """Hand freed slots to waiters in FIFO order (skipping models with no free slot)."""
        if not self.waiters:
            return
        starved: set[str] = set()
        for waiter in list(self.waiters):
            if waiter.future.done():
                self.waiters.remove(waiter)
                continue
            if waiter.model in starved:
                continue
            worker = self.scheduler.pick(waiter.model, waiter.exclude)
            if worker is None:
                if not waiter.exclude:
                    starved.add(waiter.model)
                continue
            self.live.touch_worker(worker)
            waiter.future.set_result(worker)
            self.waiters.remove(waiter)
        self.live.mark_dirty()
