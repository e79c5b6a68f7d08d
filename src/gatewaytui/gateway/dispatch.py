"""The job path's core: jobs in flight, their assignments to worker slots, the frames that
come back for them, accounting when they end, and cancelling them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from gatewaytui.gateway.config import GatewayConfig
from gatewaytui.gateway.drain import DrainState
from gatewaytui.gateway.events import EventLog
from gatewaytui.gateway.history.recorder import CURRENT_JOB
from gatewaytui.gateway.jobs import (
    Assignment,
    Cancelled,
    Job,
    JobCancelledError,
    JobTable,
    JobTooLargeError,
    RawChunks,
    RawResult,
    UnknownTargetError,
    WorkerJobError,
    WorkerLost,
    WorkerLostError,
    new_job_id,
)
from gatewaytui.gateway.live import LiveState
from gatewaytui.gateway.metrics import GatewayMetrics
from gatewaytui.gateway.registry import WorkerConnection, WorkerRecord, model_family
from gatewaytui.gateway.scheduler import Scheduler
from gatewaytui.gateway.slots import SlotQueue, deadline_error
from gatewaytui.schema.api import ActionResult
from gatewaytui.schema.protocol import (
    FEATURE_ACCEPTED,
    CancelFrame,
    ChunkFrame,
    ErrorFrame,
    ResultFrame,
)
from gatewaytui.shared.text import plural

UNRESPONSIVE = "unresponsive"
log = logging.getLogger("gatewaytui.gateway")

# Worker error codes that mean "not this worker, try another" rather than a failed request.
RETRYABLE_CODES = frozenset({"draining", "over_capacity", "not_ready", "model_not_found"})


def notify_worker(worker: WorkerRecord, frame: dict[str, Any]) -> None:
    """Send a control frame (drain, cancel) without waiting; a broken connection is the
    reader's to notice."""
    conn = worker.conn
    if conn is not None:
        asyncio.get_running_loop().create_task(_send_quietly(conn, frame))


async def _send_quietly(conn: WorkerConnection, frame: dict[str, Any]) -> None:
    with contextlib.suppress(Exception):
        await conn.send(frame)


class Dispatcher:
    """Jobs and assignments: who runs what, what came back, and what it cost."""

    def __init__(
        self,
        config: GatewayConfig,
        table: JobTable,
        *,
        live: LiveState,
        queue: SlotQueue,
        scheduler: Scheduler,
        metrics: GatewayMetrics,
        events: EventLog,
        drain: DrainState,
    ) -> None:
        self.config = config
        self.table = table
        self.jobs = table.jobs
        self.assignments = table.assignments
        self.live = live
        self.queue = queue
        self.scheduler = scheduler
        self.metrics = metrics
        self.events = events
        self.drain = drain
        # (job, ok, embeddings, exception) once per ended job: the usage ledger's hook
        self.on_job_end: Callable[[Job, bool, int, BaseException | None], None] | None = None
        # A request refused before it became a job (bad body, draining, unknown model):
        # (kind, model, stream, client, key, error) for the usage ledger.
        self.on_refused: Callable[[str, Any, bool, str | None, str | None, Exception], None] | None
        self.on_refused = None
        # The served name a job's metrics carry (set by the Gateway, which knows what is
        # served); the default keeps only the family, never the whole typed name.
        self.label_for: Callable[[str], str] = model_family

    # ---- jobs -----------------------------------------------------------------------------

    def new_job(
        self, kind: str, model: str, stream: bool, client: str | None, key: str | None = None
    ) -> Job:
        self.drain.refuse_new_work()
        job = Job(
            id=new_job_id(kind), kind=kind, model=model, stream=stream, client=client, key=key
        )
        job.metric_model = self.label_for(model)
        CURRENT_JOB.set(job)
        job.deadline = time.monotonic() + self.config.request_timeout  # one for the request
        self.jobs[job.id] = job
        self.live.touch_job(job)
        self.live.hub.touch_server()
        return job

    def refused(
        self, kind: str, body: dict[str, Any], client: str | None, key: str | None, exc: Exception
    ) -> None:
        """A request that ended before it became a job: the ledger records it all the same
        (an on-call operator asks "why did this client get a 503" of these too)."""
        if self.on_refused is not None:
            model = body.get("model")
            self.on_refused(kind, model, bool(body.get("stream")), client, key, exc)

    def end_job(self, job: Job, ok: bool, *, embeddings: int = 0) -> None:
        if self.jobs.pop(job.id, None) is None:
            return
        for assignment in list(job.assignments.values()):
            self.cancel_on_worker(assignment, "job ended")
            self.release(assignment)
        totals = self.table.totals
        totals.requests += 1
        totals.tokens_in += job.tokens_in
        totals.tokens_out += job.tokens_out
        totals.embeddings += embeddings
        self.metrics.job_finished(
            job.metric_model,
            job.kind,
            time.time() - job.started_at,
            ok,
            job.tokens_in,
            job.tokens_out,
            embeddings,
        )
        if self.on_job_end is not None:  # the usage ledger; the exception being handled, if any
            self.on_job_end(job, ok, embeddings, None if ok else sys.exc_info()[1])
        self.live.touch_job(job)
        self.live.hub.touch_server()

    def cancel_job(self, job_id: str, reason: str = "cancelled by operator") -> ActionResult:
        job = self.jobs.get(job_id)
        if job is None:
            raise UnknownTargetError(f"no in-flight job with id {job_id!r}")
        job.cancel_reason = reason
        job.state = "cancelling"
        self.live.touch_job(job)
        for assignment in list(job.assignments.values()):
            assignment.queue.put_nowait(Cancelled(reason))
        self.events.add("cancel", f"job {job_id} {reason}", job_id=job_id)
        return ActionResult(message=f"job {job_id} cancelled", target=job_id)

    # ---- assignments ----------------------------------------------------------------------

    def assign(self, job: Job, worker: WorkerRecord, assignment_id: str) -> Assignment:
        assignment = Assignment(assignment_id, job, worker)
        self.assignments[assignment_id] = assignment
        job.assignments[assignment_id] = assignment
        job.upstream_begin()
        worker.assignments.add(assignment_id)
        backend_id = getattr(worker, "backend_id", None)
        if backend_id is not None:  # a backend, not a connected worker (gateway/backends/)
            job.backend = backend_id
        else:
            if worker.id not in job.workers:
                job.workers.append(worker.id)
            job.worker = worker.id
        job.state = "running" if job.cancel_reason is None else job.state
        self.live.touch_job(job)
        return assignment

    def release(self, assignment: Assignment) -> None:
        """Free the worker slot and forget the assignment (idempotent)."""
        self.assignments.pop(assignment.id, None)
        assignment.job.assignments.pop(assignment.id, None)
        if assignment.released:
            return
        assignment.released = True
        assignment.job.upstream_end()
        worker = assignment.worker
        worker.assignments.discard(assignment.id)
        if worker.gone_at is None:
            self.scheduler.release(worker)
            self.live.touch_worker(worker)
            if worker.counters.draining and worker.inflight == 0:
                self.events.add("drained", f"worker {worker.id} drained", worker_id=worker.id)
        self.queue.pump()

    async def send_job(self, assignment: Assignment, frame: dict[str, Any]) -> None:
        conn = assignment.worker.conn
        if conn is None:
            assignment.queue.put_nowait(WorkerLost("worker connection closed"))
            return
        try:
            await conn.send(frame)
        except JobTooLargeError:  # refused before sending: the connection is fine
            self.release(assignment)
            raise
        except Exception as exc:  # the reader side will notice the broken connection too
            assignment.queue.put_nowait(WorkerLost(f"send failed: {exc}"))

    def cancel_on_worker(self, assignment: Assignment, reason: str) -> None:
        if assignment.worker.conn is not None and not assignment.released:
            notify_worker(
                assignment.worker, CancelFrame(job_id=assignment.id, reason=reason).model_dump()
            )

    def route_frame(
        self,
        worker: WorkerRecord,
        frame: RawChunks | RawResult | ChunkFrame | ResultFrame | ErrorFrame,
    ) -> None:
        """A worker's answer for one of its assignments goes to the request waiting on it."""
        assignment = self.assignments.get(frame.job_id)
        if assignment is None or assignment.worker is not worker:
            log.debug("frame for unknown job %s from %s ignored", frame.job_id, worker.id)
            return
        assignment.answered = True
        if worker.counters.missed_first_frames:
            self._answered_again(worker)
        assignment.queue.put_nowait(frame)

    def accepted(self, worker: WorkerRecord, job_id: str) -> None:
        """The worker acknowledged a job (FEATURE_ACCEPTED): a non-streaming chat's answer
        may now take as long as the request allows; the worker is not hung."""
        assignment = self.assignments.get(job_id)
        if assignment is None or assignment.worker is not worker:
            return
        assignment.accepted = True
        if worker.counters.missed_first_frames:
            self._answered_again(worker)

    def _answered_again(self, worker: WorkerRecord) -> None:
        worker.counters.missed_first_frames = 0
        if worker.unresponsive is not None:
            worker.unresponsive = None
            self.scheduler.update(worker)
            self.live.touch_worker(worker)
            self.events.add("status", f"worker {worker.id} answers again", worker_id=worker.id)

    def _missed_first_frame(self, assignment: Assignment) -> WorkerLostError:
        """The worker sent nothing for a job within workers.first_frame_timeout: cancel it
        there, count the miss (consecutive misses make it unresponsive: out of routing, shown
        `unresponsive` with the reason), and let the request retry elsewhere."""
        worker, limit = assignment.worker, self.config.first_frame_timeout
        message = f"worker {worker.id} sent nothing within {limit:g}s (workers.first_frame_timeout)"
        self.cancel_on_worker(assignment, "no answer")
        self.account(assignment, False, error=message)
        worker.counters.missed_first_frames += 1
        misses = worker.counters.missed_first_frames
        if misses >= self.config.unresponsive_after and worker.unresponsive is None:
            worker.unresponsive = f"{UNRESPONSIVE}: no answer to {plural(misses, 'job')} in a row"
            self.scheduler.update(worker)
            self.live.touch_worker(worker)
            self.events.add(
                "status",
                f"worker {worker.id} is unresponsive ({plural(misses, 'job')} unanswered); "
                "no jobs until it answers or reconnects",
                level="warning",
                worker_id=worker.id,
            )
        self.release(assignment)  # after the status: the freed slot must not go to it again
        return WorkerLostError(message)

    def fail_worker(self, worker: WorkerRecord, reason: str) -> None:
        """The worker is gone: its assignments fail over (their requests retry or fail)."""
        for assignment_id in list(worker.assignments):
            assignment = self.assignments.get(assignment_id)
            if assignment is not None:
                assignment.queue.put_nowait(WorkerLost(reason))
                self.release(assignment)

    def account(
        self,
        assignment: Assignment,
        ok: bool,
        *,
        tokens_in: int = 0,
        tokens_out: int = 0,
        embeddings: int = 0,
        error: str | None = None,
    ) -> None:
        """Per-worker counters and metrics for one finished assignment."""
        worker, job = assignment.worker, assignment.job
        seconds = time.monotonic() - assignment.started
        c = worker.counters
        per_model = c.model(assignment.model)
        per_model.requests += 1
        if ok:
            c.processed += 1
            c.processing_seconds += seconds
        else:
            c.failures += 1
            per_model.failures += 1
            c.last_error = error
            c.last_error_at = time.time()
        c.tokens_in += tokens_in
        c.tokens_out += tokens_out
        c.embeddings += embeddings
        per_model.tokens_in += tokens_in
        per_model.tokens_out += tokens_out
        per_model.embeddings += embeddings
        self.metrics.worker_finished(
            worker.id, job.kind, seconds, ok, tokens_in, tokens_out, embeddings
        )
        self.live.touch_worker(worker)

    async def next_frame(self, assignment: Assignment) -> Any:
        """The next frame for an assignment; raises for lost worker, cancel and the end of the
        request's deadline (`job.deadline`: one for the whole request, not one per frame)."""
        while True:
            remaining = max(assignment.job.deadline - time.monotonic(), 0.0)
            bounded = (
                assignment.queue.empty()
                and self._first_frame_due(assignment)
                and self.config.first_frame_timeout < remaining
            )
            try:  # a first frame is due within workers.first_frame_timeout (a hung worker)
                async with asyncio.timeout(
                    self.config.first_frame_timeout if bounded else remaining
                ):
                    item = await assignment.queue.get()
            except TimeoutError:
                if bounded and self._first_frame_due(assignment):
                    raise self._missed_first_frame(assignment) from None
                if bounded:  # acknowledged meanwhile: the answer has the request's time
                    continue
                error = deadline_error(self.config, assignment.worker)
                self.cancel_on_worker(assignment, "request timeout")
                self.account(assignment, False, error=error.message)
                self.release(assignment)
                raise error from None
            return self.outcome(assignment, item)

    @staticmethod
    def _first_frame_due(assignment: Assignment) -> bool:
        """Whether the worker still owes the frame that shows it is not hung: the first chunk
        of a stream or the answer to an embeddings slice; for a non-streaming chat (whose
        first frame is its whole answer, which may rightly take long) its `accepted` frame,
        from a worker that sends them (FEATURE_ACCEPTED; others are not bounded). Backends
        have their own timeout_s."""
        worker, job = assignment.worker, assignment.job
        if assignment.answered or getattr(worker, "backend_id", None) is not None:
            return False
        if job.stream or job.kind == "embeddings":
            return True
        return not assignment.accepted and FEATURE_ACCEPTED in worker.features

    def outcome(self, assignment: Assignment, item: Any) -> Any:
        """What one item from an assignment's queue means: the frame itself, or the error it
        stands for (a stream also takes items off the queue itself, to send them together)."""
        if isinstance(item, RawChunks | ChunkFrame):
            assignment.job.first_token()
            return item
        if isinstance(item, WorkerLost):
            self.account(assignment, False, error=f"worker lost: {item.reason}")
            raise WorkerLostError(f"worker {assignment.worker.id} was lost: {item.reason}")
        if isinstance(item, Cancelled):
            self.cancel_on_worker(assignment, item.reason)
            self.release(assignment)
            raise JobCancelledError(f"job {assignment.job.id} {item.reason}")
        if isinstance(item, ErrorFrame):
            self._failed(assignment, item)
        if isinstance(item, ResultFrame | RawResult):
            self.release(assignment)  # the worker is done with it: no cancel at job end
        return item

    def _failed(self, assignment: Assignment, item: ErrorFrame) -> None:
        """A worker's error answer: retry elsewhere if it says so, else fail the request."""
        self.account(assignment, False, error=item.message)
        self.release(assignment)
        if item.retryable or item.code in RETRYABLE_CODES:
            raise WorkerLostError(f"worker {assignment.worker.id} refused the job: {item.message}")
        raise WorkerJobError(item.message, status=item.status, code=item.code or "worker_error")
