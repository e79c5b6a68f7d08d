"""`/v1/embeddings` partitioned across workers: inputs are cut into chunks of each worker's
preferred batch size, run in parallel (up to `max_parallel_embeddings`), retried elsewhere
when a chunk fails, and reassembled in order."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from gatewaytui.gateway.config import GatewayConfig
from gatewaytui.gateway.dispatch import Dispatcher
from gatewaytui.gateway.drain import DrainState
from gatewaytui.gateway.events import EventLog
from gatewaytui.gateway.jobs import (
    Assignment,
    BadRequestError,
    GatewayError,
    Job,
    JobCancelledError,
    RawResult,
    WorkerJobError,
    WorkerLostError,
    job_frame,
)
from gatewaytui.gateway.registry import WorkerRecord
from gatewaytui.gateway.slots import SlotQueue
from gatewaytui.schema.protocol import ResultFrame
from gatewaytui.shared.text import plural


@dataclass
class _PartitionRun:
    """The shared progress of one request's runners."""

    total: int
    raw: bytes | None = None  # the whole answer as one upstream wrote it (passed on as is)
    next_start: int = 0
    done: int = 0
    chunk_seq: int = 0
    runners: int = 1  # the request's own task runs the first
    retry: deque[tuple[int, int, int, frozenset[str]]] = field(default_factory=deque)
    changed: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Chunk:
    """One slice of the inputs and how often it failed (and where)."""

    start: int
    count: int
    attempts: int
    excluded: frozenset[str]


class EmbeddingsPath:
    """Runs embeddings requests as partitioned jobs through the dispatcher."""

    def __init__(
        self,
        config: GatewayConfig,
        dispatch: Dispatcher,
        queue: SlotQueue,
        events: EventLog,
        drain: DrainState,
    ) -> None:
        self.config = config
        self.dispatch = dispatch
        self.queue = queue
        self.events = events
        self.drain = drain

    def _admit(self, body: dict[str, Any]) -> tuple[str, list[Any]]:
        """The model and inputs, or the error that refuses the request before it is a job."""
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequestError("'model' is required and must be a string")
        inputs = _embedding_inputs(body.get("input"))
        self.drain.refuse_new_work()
        self.queue.check_model(model)
        return model, inputs

    async def embeddings(
        self, body: dict[str, Any], *, client: str | None = None, key: str | None = None
    ) -> dict[str, Any] | bytes:
        """Split the inputs across workers by their batch size and reassemble in order. One
        upstream's answer for all the inputs that it names the requested model in comes
        back as its bytes (nothing to reassemble: no parsing, no encoding)."""
        try:
            model, inputs = self._admit(body)
        except GatewayError as exc:
            self.dispatch.refused("embeddings", body, client, key, exc)
            raise
        job = self.dispatch.new_job("embeddings", model, False, client, key)
        total = len(inputs)
        job.partition = {
            "total_items": total,
            "done_items": 0,
            "chunks_done": 0,
            "chunks_inflight": 0,
            "chunks_failed": 0,
        }
        run = _PartitionRun(total)
        results: list[Any] = [None] * total
        ok = False
        try:
            # The first runner is this task; another starts only when a chunk was claimed and
            # inputs are left (16 inputs to one backend: no task at all, where 4 runners were
            # started before and 3 of them only waited for the first).
            async with asyncio.TaskGroup() as group:
                await self._runner(job, body, inputs, results, run, group)
            ok = True
        except* GatewayError as group_error:
            raise group_error.exceptions[0] from None
        finally:
            self.dispatch.end_job(job, ok, embeddings=total if ok else 0)
        if run.raw is not None:
            return run.raw
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": vector}
                for i, vector in enumerate(results)
            ],
            "model": model,
            "usage": {"prompt_tokens": job.tokens_in, "total_tokens": job.tokens_in},
        }

    async def _runner(
        self,
        job: Job,
        body: dict[str, Any],
        inputs: list[Any],
        results: list[Any],
        run: _PartitionRun,
        group: asyncio.TaskGroup,
    ) -> None:
        """Take chunks (retries first) until every input has its vector; start one more
        runner (up to `max_parallel_embeddings`) each time inputs are left after a claim."""
        while True:
            if job.cancel_reason is not None:
                raise JobCancelledError(f"job {job.id} {job.cancel_reason}")
            if run.retry:
                chunk = _Chunk(*run.retry.popleft())
            elif run.next_start < run.total:
                chunk = _Chunk(-1, 0, 0, frozenset())
            elif run.done >= run.total:
                return
            else:
                run.changed.clear()
                await run.changed.wait()
                continue
            worker = await self.queue.acquire(
                job.model, chunk.excluded, deadline=job.deadline, job=job
            )
            if chunk.start < 0:
                if run.next_start >= run.total:  # another runner claimed the rest meanwhile
                    self.queue.free_slot(worker)
                    continue
                chunk.start = run.next_start
                chunk.count = min(worker.preferred_batch_size, run.total - chunk.start)
                run.next_start += chunk.count
                if run.next_start < run.total and run.runners < self.config.max_parallel_embeddings:
                    run.runners += 1
                    group.create_task(self._runner(job, body, inputs, results, run, group))
            await self._run_chunk(job, body, inputs, results, run, chunk, worker)

    async def _run_chunk(
        self,
        job: Job,
        body: dict[str, Any],
        inputs: list[Any],
        results: list[Any],
        run: _PartitionRun,
        chunk: _Chunk,
        worker: WorkerRecord,
    ) -> None:
        """One chunk on the worker whose slot was reserved for it."""
        partition = job.partition
        assert partition is not None
        start, count = chunk.start, chunk.count
        run.chunk_seq += 1
        assignment = self.dispatch.assign(job, worker, f"{job.id}.c{run.chunk_seq}")
        partition["chunks_inflight"] += 1
        self.dispatch.live.touch_job(job)
        model = worker.concrete_model(job.model)
        chunk_body = dict(body, input=inputs[start : start + count], model=model)
        frame = job_frame(assignment.id, "embeddings", model, False, chunk_body)
        try:
            await self.dispatch.send_job(assignment, frame)
            whole = start == 0 and count == run.total
            vectors, tokens, raw = await self._result(assignment, count, whole, job.model)
        except (WorkerLostError, WorkerJobError) as exc:
            partition["chunks_failed"] += 1
            self._retry_later(job, run, chunk, worker, exc)
        else:
            if raw is not None:
                run.raw = raw
            else:
                results[start : start + count] = vectors
            job.tokens_in += tokens
            partition["done_items"] += count
            partition["chunks_done"] += 1
            run.done += count
            self.dispatch.account(assignment, True, tokens_in=tokens, embeddings=count)
        finally:
            partition["chunks_inflight"] -= 1
            # Still assigned means no answer came: the client left, another chunk failed
            # for good (the task group cancelled this runner) or the job was cancelled.
            # Tell the worker before freeing its slot, or it computes on for nothing.
            self.dispatch.cancel_on_worker(assignment, job.cancel_reason or "request ended")
            self.dispatch.release(assignment)
            self.dispatch.live.touch_job(job)
            run.changed.set()

    def _retry_later(
        self, job: Job, run: _PartitionRun, chunk: _Chunk, worker: WorkerRecord, exc: GatewayError
    ) -> None:
        """Queue a failed chunk for another worker, or fail the request after enough tries."""
        start, count = chunk.start, chunk.count
        attempts = chunk.attempts + 1
        if attempts >= self.config.embedding_chunk_attempts:
            raise WorkerJobError(
                f"embeddings chunk {start}..{start + count - 1} failed {plural(attempts, 'time')}; "
                f"last error: {exc.message}",
                status=502,
            ) from None
        run.retry.append((start, count, attempts, chunk.excluded | {worker.id}))
        self.events.add(
            "retry",
            f"job {job.id} chunk {start}+{count} failed on {worker.id}, retrying elsewhere",
            level="warning",
            job_id=job.id,
        )

    async def _result(
        self, assignment: Assignment, count: int, whole: bool, model: str
    ) -> tuple[list[Any], int, bytes | None]:
        while True:
            item = await self.dispatch.next_frame(assignment)
            if isinstance(item, RawResult):
                tokens = item.usage.prompt_tokens if item.usage is not None else 0
                if whole and item.count == count and item.model == model:
                    return [], tokens, item.raw
            elif not isinstance(item, ResultFrame):
                continue
            data = (item.data or {}).get("data")
            if not isinstance(data, list) or len(data) != count:
                got = len(data) if isinstance(data, list) else "no"
                error = f"bad embeddings result: {got} vectors"
                self.dispatch.account(assignment, False, error=error)
                raise WorkerJobError(
                    f"worker returned {got} vectors for {count} inputs", status=502
                )
            ordered = sorted(data, key=lambda d: d.get("index", 0) if isinstance(d, dict) else 0)
            vectors = [d.get("embedding") if isinstance(d, dict) else None for d in ordered]
            usage = item.usage.model_dump() if item.usage else (item.data or {}).get("usage") or {}
            return vectors, int(usage.get("prompt_tokens", 0) or 0), None


def _embedding_inputs(value: Any) -> list[Any]:
    """OpenAI accepts a string, a list of strings, a token list, or a list of token lists."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, int) for v in value):
            return [value]
        if all(
            isinstance(v, str) or (isinstance(v, list) and all(isinstance(t, int) for t in v))
            for v in value
        ):
            return list(value)
    raise BadRequestError("'input' must be a non-empty string, list of strings or token lists")
