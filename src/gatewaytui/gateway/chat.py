"""`/v1/chat/completions` on the job path: pick a worker, send the job, answer with the
result or stream its chunks as SSE; a worker lost before the first byte is retried once."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from gatewaytui.gateway.dispatch import Dispatcher
from gatewaytui.gateway.drain import DrainState
from gatewaytui.gateway.events import EventLog
from gatewaytui.gateway.hub import encode
from gatewaytui.gateway.jobs import (
    Assignment,
    BadRequestError,
    GatewayError,
    Job,
    RawChunks,
    RawResult,
    WorkerLostError,
    job_frame,
)
from gatewaytui.gateway.slots import SlotQueue
from gatewaytui.schema.protocol import ChunkFrame, ResultFrame
from gatewaytui.shared import codec


@dataclass
class _StreamRun:
    """Where one SSE answer stands."""

    wants_usage: bool
    ok: bool = False
    sent_any: bool = False
    usage_sent: bool = False  # a usage chunk went through as the upstream wrote it
    last_chunk: dict[str, Any] | bytes = field(default_factory=dict)
    pending: Any = None  # an item taken off the queue behind chunks, not yet handled

    @property
    def make_usage(self) -> bool:
        """The client asked for usage and no upstream usage chunk went through."""
        return self.wants_usage and not self.usage_sent


class ChatPath:
    """Runs chat completions through the dispatcher and the slot queue."""

    def __init__(
        self, dispatch: Dispatcher, queue: SlotQueue, events: EventLog, drain: DrainState
    ) -> None:
        self.dispatch = dispatch
        self.queue = queue
        self.events = events
        self.drain = drain

    async def chat(
        self, body: dict[str, Any], *, client: str | None = None, key: str | None = None
    ) -> tuple[Job, dict[str, Any] | AsyncGenerator[bytes, None]]:
        """Run a chat completion. Returns the response body, or an SSE byte stream.

        Errors that happen before the first byte (unknown model, queue full, draining)
        raise, so the HTTP layer can answer with a proper status code.
        """
        try:
            model = self._admit(body)
        except GatewayError as exc:
            self.dispatch.refused("chat", body, client, key, exc)
            raise
        stream = bool(body.get("stream"))
        job = self.dispatch.new_job("chat", model, stream, client, key)
        try:
            assignment = await self._start(job, body, frozenset())
        except BaseException:
            self.dispatch.end_job(job, False)
            raise
        if stream:
            return job, self._stream(job, body, assignment)
        return job, await self._finish(job, body, assignment)

    def _admit(self, body: dict[str, Any]) -> str:
        """The model asked for, or the error that refuses the request before it is a job."""
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequestError("'model' is required and must be a string")
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            raise BadRequestError("'messages' must be a non-empty list")
        self.drain.refuse_new_work()  # before the model lookup: an unknown model is 503 too
        self.queue.check_model(model)
        return model

    async def _start(self, job: Job, body: dict[str, Any], exclude: frozenset[str]) -> Assignment:
        worker = await self.queue.acquire(job.model, exclude, deadline=job.deadline, job=job)
        assignment_id = job.id if job.attempt == 1 else f"{job.id}.{job.attempt}"
        assignment = self.dispatch.assign(job, worker, assignment_id)
        model = worker.concrete_model(job.model)
        frame = job_frame(
            assignment_id,
            "chat",
            model,
            job.stream,
            body if model == body.get("model") else {**body, "model": model},
        )
        await self.dispatch.send_job(assignment, frame)
        return assignment

    async def _retry(
        self, job: Job, body: dict[str, Any], assignment: Assignment, *, announce: bool = False
    ) -> Assignment:
        """The worker was lost before any answer: once more, on another worker."""
        job.attempt += 1
        self.dispatch.release(assignment)
        lost = assignment.worker.id
        if announce:
            self.events.add(
                "retry", f"job {job.id} retried after worker {lost} was lost", job_id=job.id
            )
        return await self._start(job, body, frozenset({lost}))

    async def _finish(
        self, job: Job, body: dict[str, Any], assignment: Assignment
    ) -> dict[str, Any]:
        ok = False
        try:
            while True:
                try:
                    item = await self.dispatch.next_frame(assignment)
                except WorkerLostError:
                    if job.attempt > 1:
                        raise
                    assignment = await self._retry(job, body, assignment, announce=True)
                    continue
                if isinstance(item, ResultFrame | RawResult):
                    data = item.data or {}
                    usage = item.usage.model_dump() if item.usage else data.get("usage") or {}
                    job.tokens_in = int(usage.get("prompt_tokens", 0) or 0)
                    job.tokens_out = int(usage.get("completion_tokens", 0) or 0)
                    self._account(job, assignment)
                    ok = True
                    return data
                if isinstance(item, ChunkFrame | RawChunks):
                    job.tokens_out += item.tokens
                    self.dispatch.live.touch_job(job)
        finally:
            self.dispatch.end_job(job, ok)

    def _account(self, job: Job, assignment: Assignment) -> None:
        self.dispatch.account(assignment, True, tokens_in=job.tokens_in, tokens_out=job.tokens_out)

    async def _stream(
        self, job: Job, body: dict[str, Any], assignment: Assignment
    ) -> AsyncGenerator[bytes, None]:
        run = _StreamRun(wants_usage=_wants_stream_usage(body))
        dispatch = self.dispatch
        try:
            while True:
                try:
                    if run.pending is not None:
                        item, run.pending = dispatch.outcome(assignment, run.pending), None
                    else:
                        item = await dispatch.next_frame(assignment)
                except WorkerLostError as exc:
                    if run.sent_any or job.attempt > 1:
                        job.error = exc
                        yield _sse_error(exc)
                        return
                    assignment = await self._retry(job, body, assignment)
                    continue
                except GatewayError as exc:
                    job.error = exc
                    yield _sse_error(exc)
                    return
                if isinstance(item, ResultFrame):
                    run.ok = True
                    yield self._end(job, assignment, item, run.make_usage, run.last_chunk)
                    return
                if not isinstance(item, RawChunks | ChunkFrame):
                    continue
                data = self._batch(job, assignment, item, run)
                if run.ok:  # the result frame was queued behind the chunks
                    yield data
                    return
                dispatch.live.touch_job(job)
                yield data
        except GatewayError as exc:  # a failed retry start (queue full, timeout)
            job.error = exc
            yield _sse_error(exc)
        finally:
            if not run.ok and job.cancel_reason is None:
                for a in list(job.assignments.values()):
                    dispatch.cancel_on_worker(a, "client went away")
            dispatch.end_job(job, run.ok)

    def _batch(
        self, job: Job, assignment: Assignment, item: RawChunks | ChunkFrame, run: _StreamRun
    ) -> bytes:
        """Chunks already queued go out together, in one write; so does the stream's end when
        its result frame is there as well (then `run.ok`)."""
        parts: list[bytes] = []
        queue = assignment.queue
        while True:
            run.sent_any = True
            job.tokens_out += item.tokens
            if isinstance(item, RawChunks):
                parts.append(item.sse())
                run.last_chunk = item.events[-1]
                run.usage_sent = run.usage_sent or item.usage
            else:
                run.last_chunk = item.data
                parts.append(b"data: " + codec.dumps(item.data) + b"\n\n")
            if queue.empty():
                break
            queued = queue.get_nowait()
            if isinstance(queued, ResultFrame):
                self.dispatch.outcome(assignment, queued)
                run.ok = True
                parts.append(self._end(job, assignment, queued, run.make_usage, run.last_chunk))
                return b"".join(parts)
            if not isinstance(queued, RawChunks | ChunkFrame):
                run.pending = queued
                break
            item = queued
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _end(
        self,
        job: Job,
        assignment: Assignment,
        item: ResultFrame,
        make_usage: bool,
        last_chunk: dict[str, Any] | bytes,
    ) -> bytes:
        """The stream's end: the result's data (or a usage chunk, when the client asked for
        one and none went through), then `[DONE]`."""
        usage = item.usage.model_dump() if item.usage else {}
        job.tokens_in = int(usage.get("prompt_tokens", 0) or 0)
        job.tokens_out = int(usage.get("completion_tokens", 0) or job.tokens_out)
        self._account(job, assignment)
        data = item.data
        if make_usage and not (data and data.get("usage")):
            # Workers fold the usage-only chunk into the result frame's usage; the client
            # asked for it (stream_options.include_usage), so it gets one.
            data = _usage_chunk(_chunk_dict(last_chunk), job, usage.get("total_tokens"))
        tail = b"data: " + codec.dumps(data) + b"\n\n" if data else b""
        return tail + b"data: [DONE]\n\n"


def _chunk_dict(chunk: dict[str, Any] | bytes) -> dict[str, Any]:
    """The last chunk as a dict (parsed only when a usage chunk is made from it)."""
    if isinstance(chunk, dict):
        return chunk
    try:
        parsed = codec.loads(chunk)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _wants_stream_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def _usage_chunk(last_chunk: dict[str, Any], job: Job, total: Any) -> dict[str, Any]:
    """The final usage-only chunk of an OpenAI stream (`choices: []`), with the stream's
    id, created and model taken from its last chunk."""
    return {
        "id": last_chunk.get("id") or f"chatcmpl-{job.id}",
        "object": "chat.completion.chunk",
        "created": last_chunk.get("created") or int(job.started_at),
        "model": last_chunk.get("model") or job.model,
        "choices": [],
        "usage": {
            "prompt_tokens": job.tokens_in,
            "completion_tokens": job.tokens_out,
            "total_tokens": int(total or 0) or job.tokens_in + job.tokens_out,
        },
    }


def _sse_error(exc: GatewayError) -> bytes:
    return b"data: " + encode(exc.body()).encode() + b"\n\n"
