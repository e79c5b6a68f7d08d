"""Backend calls: a job frame for a backend becomes an HTTP call, and its answer comes
back to the gateway as worker frames."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import aiohttp

from gatewaytui.gateway.backends import http as backend_http
from gatewaytui.gateway.backends.http import UpstreamError
from gatewaytui.gateway.jobs import RawChunks, RawResult
from gatewaytui.schema.backends import (
    BackendSpec,
    DeclaredModel,
    ModelCapability,
    clamp_max_output_tokens,
)
from gatewaytui.schema.protocol import (
    ChunkFrame,
    ErrorFrame,
    JobFrame,
    ResultFrame,
    Usage,
)
from gatewaytui.shared.passthrough import embeddings_summary

if TYPE_CHECKING:
    from gatewaytui.gateway.backends.host import BackendHost
    from gatewaytui.gateway.backends.records import BackendRecord

log = logging.getLogger("gatewaytui.gateway.backends")


# ---- records --------------------------------------------------------------------------------


class BackendConnection:
    """Stands where a worker's WebSocket would: job frames become HTTP calls to the backend,
    and the answers come back to the gateway as worker frames."""

    def __init__(
        self,
        host: BackendHost,
        call_failed: Callable[[BackendRecord], None],
        record: BackendRecord,
    ) -> None:
        self.host = host
        self.call_failed = call_failed  # the backend did not answer: its health hears of it
        self.record = record
        self.tasks: dict[str, asyncio.Task[None]] = {}

    async def send(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "job":
            # Built by the gateway itself (jobs.job_frame): no validation on this hot path.
            job = JobFrame.model_construct(**frame)
            task = asyncio.get_running_loop().create_task(
                self._run(job), name=f"backend-{job.job_id}"
            )
            self.tasks[job.job_id] = task
            task.add_done_callback(partial(self._forget, job.job_id))
        elif kind == "cancel":
            running = self.tasks.get(str(frame.get("job_id")))
            if running is not None:
                running.cancel()  # closes the upstream request

    def _forget(self, job_id: str, _: asyncio.Task[None]) -> None:
        self.tasks.pop(job_id, None)

    async def close(self, code: int, reason: str) -> None:
        """Nothing to close: each call is its own request."""

    def _emit(self, frame: Any) -> None:
        self.host.worker_frame(self.record.worker, frame)

    async def _run(self, job: JobFrame) -> None:
        record = self.record
        spec = record.spec  # the spec as of the job's start: an edit affects new jobs only
        try:
            async with record.http.use() as client:
                if job.kind == "chat":
                    await self._chat(job, spec, client)
                else:
                    await self._embeddings(job, spec, client)
        except UpstreamError as exc:
            if exc.code in ("backend_unreachable", "backend_key_missing"):
                self.call_failed(record)
            self._emit(
                ErrorFrame(
                    job_id=job.job_id,
                    message=exc.message[:4096],
                    status=exc.status,
                    code=exc.code,
                    retryable=exc.retryable,
                )
            )
        except Exception:  # a bug must fail the job, not leave it hanging
            log.exception("backend %s: job %s failed", spec.id, job.job_id)
            self._emit(
                ErrorFrame(
                    job_id=job.job_id,
                    message=f"backend {spec.id}: internal error",
                    status=500,
                    code="backend_error",
                )
            )

    def _model(
        self, job: JobFrame, spec: BackendSpec, need: ModelCapability
    ) -> DeclaredModel | None:
        model = spec.declared(job.model)
        if model is not None and not model.can(need):
            elsewhere = self.host.worker_knows_model(job.model)
            caps = ", ".join(c.value for c in model.capabilities)
            raise UpstreamError(
                f"model {job.model!r} on backend {spec.id} is declared without {need.value} "
                f"(capabilities: {caps})",
                status=400,
                code="model_capability",
                retryable=elsewhere,
            )
        return model

    async def _chat(self, job: JobFrame, spec: BackendSpec, client: aiohttp.ClientSession) -> None:
        model = self._model(job, spec, ModelCapability.CHAT)
        body = dict(job.body)
        body["model"] = job.model
        ceiling = model.max_output_tokens if model is not None else 0
        for name in ("max_tokens", "max_completion_tokens"):
            value = body.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                body[name], _ = clamp_max_output_tokens(value, ceiling)
        modifier = model.token_modifier if model is not None else 1.0
        if job.stream and (model is None or model.can(ModelCapability.STREAM)):
            await self._chat_stream(job, spec, body, modifier, client)
            return
        body["stream"] = False
        body.pop("stream_options", None)
        data = await backend_http.post_json(client, spec, "/chat/completions", body)
        usage = _usage(data.get("usage"), modifier)
        if not job.stream:
            self._emit(ResultFrame(job_id=job.job_id, data=data, usage=usage))
            return
        # The model cannot stream (or the server would not): one chunk made from the answer.
        tokens = usage.completion_tokens if usage is not None else 1
        self._emit(ChunkFrame(job_id=job.job_id, data=completion_as_chunk(data), tokens=tokens))
        self._emit(ResultFrame(job_id=job.job_id, usage=usage))

    async def _chat_stream(
        self,
        job: JobFrame,
        spec: BackendSpec,
        body: dict[str, Any],
        modifier: float,
        client: aiohttp.ClientSession,
    ) -> None:
        options = dict(body.get("stream_options") or {})
        client_wants_usage = bool(options.get("include_usage"))
        body["stream"] = True
        body["stream_options"] = {**options, "include_usage": True}  # usage is always counted
        raw_usage: Any = None
        job_id = job.job_id
        emit = self._emit
        # aclosing: the connection goes back before the result frame frees the slot, also
        # when the loop stops early.
        stream = backend_http.stream_chat_batches(client, spec, body)
        async with contextlib.aclosing(stream) as batches:
            async for batch in batches:
                if isinstance(batch, dict):  # a JSON answer to a stream request
                    raw_usage = batch.get("usage")
                    usage = _usage(raw_usage, modifier)
                    tokens = usage.completion_tokens if usage is not None else 1
                    data = completion_as_chunk(batch)
                    emit(ChunkFrame(job_id=job_id, data=data, tokens=tokens))
                    break
                # Passed on as the upstream's bytes; only usage, choices and output are read.
                events: list[bytes] = []
                tokens = 0
                usage_passed = False
                for raw, chunk in batch:
                    if chunk.get("usage"):
                        raw_usage = chunk["usage"]
                    choices = chunk.get("choices")
                    if not choices:  # the usage-only chunk: passed on if the client asked
                        if client_wants_usage:
                            events.append(raw)
                            usage_passed = True
                        continue
                    tokens += _has_output(choices)
                    events.append(raw)
                if events:
                    emit(RawChunks(job_id, events, tokens, usage_passed))
        emit(ResultFrame(job_id=job_id, usage=_usage(raw_usage, modifier)))

    async def _embeddings(
        self, job: JobFrame, spec: BackendSpec, client: aiohttp.ClientSession
    ) -> None:
        model = self._model(job, spec, ModelCapability.EMBED)
        body = dict(job.body)
        body["model"] = job.model
        raw = await backend_http.post_raw(client, spec, "/embeddings", body)
        dimension = model.embedding_dimension if model is not None else None
        check_dimension = bool(dimension) and "dimensions" not in body
        modifier = model.token_modifier if model is not None else 1.0
        if not check_dimension and modifier == 1.0:
            # The vectors need not be understood: pass the body on as bytes, with only its
            # size, model and usage read (the embeddings path decides whether it can).
            summary = embeddings_summary(raw)
            if summary is not None:
                count, answered_model, raw_usage = summary
                usage = _usage(raw_usage, 1.0)
                self._emit(RawResult(job.job_id, raw, count, answered_model, usage))
                return
        data = backend_http.parse_answer(spec, raw)
        if check_dimension:
            for item in data.get("data") or ():
                vector = item.get("embedding") if isinstance(item, dict) else None
                if isinstance(vector, list) and len(vector) != dimension:
                    raise UpstreamError(
                        f"backend {spec.id} returned {len(vector)}-dimensional vectors for "
                        f"{job.model!r}, which is declared with embedding_dimension {dimension}",
                        code="bad_backend_response",
                    )
        usage = _usage(data.get("usage"), model.token_modifier if model is not None else 1.0)
        self._emit(ResultFrame(job_id=job.job_id, data=data, usage=usage))


def _has_output(choices: list[Any]) -> bool:
    for choice in choices:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict) and (
            delta.get("content") or delta.get("tool_calls") or delta.get("reasoning_content")
        ):
            return True
    return False


def _usage(raw: Any, modifier: float) -> Usage | None:
    """The upstream's usage, scaled by the model's token modifier (1 = as reported)."""
    if not isinstance(raw, dict):
        return None

    def scaled(name: str) -> int:
        value = raw.get(name)
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            return 0
        return int(value * modifier + 0.5)

    prompt, completion = scaled("prompt_tokens"), scaled("completion_tokens")
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=scaled("total_tokens") or prompt + completion,
    )


def completion_as_chunk(data: dict[str, Any]) -> dict[str, Any]:
    """A non-streamed chat completion as one `chat.completion.chunk` (with the finish reason)."""
    choices = []
    for index, choice in enumerate(data.get("choices") or ()):
        if not isinstance(choice, dict):
            continue
        found = choice.get("message")
        message: dict[str, Any] = found if isinstance(found, dict) else {}
        delta: dict[str, Any] = {"role": message.get("role", "assistant")}
        if message.get("content") is not None:
            delta["content"] = message["content"]
        if isinstance(message.get("tool_calls"), list):
            delta["tool_calls"] = [
                {**call, "index": i} if isinstance(call, dict) else call
                for i, call in enumerate(message["tool_calls"])
            ]
        choices.append(
            {
                "index": choice.get("index", index),
                "delta": delta,
                "finish_reason": choice.get("finish_reason"),
            }
        )
    return {
        "id": data.get("id", ""),
        "object": "chat.completion.chunk",
        "created": data.get("created", int(time.time())),
        "model": data.get("model", ""),
        "choices": choices,
    }
