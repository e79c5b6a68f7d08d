"""What answers a worker's jobs: `JobHandler`, the interface of the simulated and relay
handlers. (Not to be confused with the gateway's *backends*, `gateway/backends/`: servers the
gateway itself calls.)

One handler may serve many `WorkerClient`s (a simulated fleet in one process shares one), so
it reports readiness and models to listeners rather than to a single connection.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

from gatewaytui.schema.protocol import JobFrame, Usage
from gatewaytui.shared import codec
from gatewaytui.shared.lifecycle import Listener, Listeners, Started

log = logging.getLogger("gatewaytui.workers.job_handler")

# Limits of StatusFrame/RegisterFrame: larger values would fail validation on the wire.
MAX_REASON_CHARS = 1024
MAX_MODELS = 512

ChunkSink = Callable[[dict[str, Any], int], Awaitable[None]]
"""Receives one chat.completion.chunk object and the number of tokens it carries."""

RawChunkSink = Callable[[list[str], int, bool], Awaitable[None]]
"""Receives chunks that arrived together as their JSON texts (passed on unchanged), the tokens
they carry, and whether one of them is the usage chunk the client asked for."""


class JobError(Exception):
    """A job failed in a way the gateway should hear about as an `error` frame."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status if 400 <= status <= 599 else 502
        self.message = message
        self.code = code


class JobHandler(Started, ABC):
    """Runs jobs and keeps readiness/models current; subclasses implement the three calls."""

    def __init__(self, models: list[str] | None = None) -> None:
        self._models: list[str] = list(models or [])
        self._ready = True
        self._reason: str | None = None
        self._listeners = Listeners("the job handler's state")

    # ---- state seen by the worker connections ---------------------------------------------

    @property
    def models(self) -> list[str]:
        return list(self._models)

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def reason(self) -> str | None:
        """Why the handler is not ready (None when ready)."""
        return self._reason

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` whenever readiness or models change; returns an unsubscribe."""
        return self._listeners.subscribe(listener)

    def _update(
        self,
        *,
        ready: bool | None = None,
        reason: str | None = None,
        models: list[str] | None = None,
    ) -> None:
        changed = False
        if models is not None and len(models) > MAX_MODELS:
            log.warning("serving only the first %d of %d models", MAX_MODELS, len(models))
            models = models[:MAX_MODELS]
        if ready is not None:
            new_reason = None if ready else (reason or "not ready")[:MAX_REASON_CHARS]
            if ready != self._ready or new_reason != self._reason:
                self._ready, self._reason = ready, new_reason
                changed = True
        if models is not None and models != self._models:
            self._models = list(models)
            changed = True
        if changed:
            self._listeners.notify()

    # `start` and `close` (from `Started`): the relay opens and closes its HTTP client there.

    # ---- jobs -------------------------------------------------------------------------------

    @abstractmethod
    async def chat(self, job: JobFrame) -> tuple[dict[str, Any], Usage]:
        """A non-streaming chat job: the full chat.completion body and its usage."""

    @abstractmethod
    async def chat_stream(self, job: JobFrame, emit: ChunkSink) -> Usage:
        """A streaming chat job: `emit` each chunk object, then return the usage."""

    async def chat_stream_raw(self, job: JobFrame, emit: RawChunkSink) -> Usage:
        """`chat_stream`, with the chunks as JSON texts that may travel several to a frame.
        This default encodes each chunk object (one per call); a backend that reads an
        upstream's bytes (the relay) overrides it to pass them on unchanged."""

        async def one(chunk: dict[str, Any], tokens: int) -> None:
            await emit([codec.dumps_text(chunk)], tokens, False)

        return await self.chat_stream(job, one)

    async def embeddings_raw(self, job: JobFrame) -> tuple[str, Usage]:
        """`embeddings` as the answer's JSON text (for a `result.raw` frame). This default
        encodes the answer; a backend that has the upstream's bytes (the relay) passes them."""
        data, usage = await self.embeddings(job)
        return codec.dumps_text(data), usage

    @abstractmethod
    async def embeddings(self, job: JobFrame) -> tuple[dict[str, Any], Usage]:
        """An embeddings job over this worker's slice: the OpenAI response and its usage."""


# ---- helpers shared by the backends -----------------------------------------------------


def words_in_messages(body: dict[str, Any]) -> int:
    """Whitespace-separated words in a chat request's messages: a cheap token estimate."""
    total = 0
    messages = body.get("messages")
    if not isinstance(messages, list):
        return 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            total += len(content.split())
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    total += len(part["text"].split())
    return total


def embedding_inputs(body: dict[str, Any]) -> list[str | list[int]]:
    """The `input` of an embeddings request as a list (a bare string or token list is one)."""
    value = body.get("input")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return [value]
        if all(isinstance(v, str) or _is_token_list(v) for v in value):
            return list(value)
    raise JobError(400, "embeddings input must be a string or a list of strings", "invalid_input")


def _is_token_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, int) for v in value)


def usage_from(value: Any) -> Usage | None:
    """Parse an OpenAI usage object leniently (missing totals are derived)."""
    if not isinstance(value, dict):
        return None
    try:
        prompt = int(value.get("prompt_tokens") or 0)
        completion = int(value.get("completion_tokens") or 0)
        total = int(value.get("total_tokens") or prompt + completion)
        return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)
    except (TypeError, ValueError):
        return None


def requested_max_tokens(body: dict[str, Any], default: int) -> int:
    """`max_completion_tokens`, else `max_tokens`, else the default; rejects bad values."""
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise JobError(400, f"{key} must be a non-negative integer", "invalid_request")
        return value
    return default
