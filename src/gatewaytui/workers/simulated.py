"""A simulated inference server: deterministic text and embeddings, paced by timers.

It does no busy work at all (every delay is an `asyncio.sleep`), so thousands of simulated
workers fit in one process for load tests. Text is pseudo-words derived from a hash of the
seed, the model and the messages, so the same request always yields the same answer, streamed
or not; embeddings are unit vectors derived from a hash of the input text alone, so tests can
check that a gateway put partitioned results back in order.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import random
import struct
import time
from typing import Any

from gatewaytui.schema.protocol import JobFrame, Usage
from gatewaytui.workers.job_handler import (
    ChunkSink,
    JobError,
    JobHandler,
    embedding_inputs,
    requested_max_tokens,
    words_in_messages,
)
from gatewaytui.workers.settings import SimulateSettings

log = logging.getLogger("gatewaytui.workers.simulated")

_WORDS = """lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt
ut labore et dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco laboris
nisi aliquip ex ea commodo consequat duis aute irure in reprehenderit voluptate velit esse
cillum fugiat nulla pariatur excepteur sint occaecat cupidatat non proident sunt culpa qui
officia deserunt mollit anim id est laborum gateway worker token stream"""
VOCABULARY: tuple[str, ...] = tuple(_WORDS.split())

# A streamed chunk carries at most this much generation time, so fast simulated models send
# a few chunks per second instead of thousands.
_MIN_CHUNK_INTERVAL_S = 0.05
_MAX_EMBEDDING_DIM = 65_536
# A guard against a request for a billion tokens eating the process's memory.
MAX_SIMULATED_TOKENS = 100_000


def embed_text(text: str | list[int], dim: int) -> list[float]:
    """The simulated embedding of one input: a unit vector that depends only on the text."""
    material = text if isinstance(text, str) else json.dumps(text)
    raw = hashlib.shake_256(material.encode("utf-8")).digest(dim * 2)
    values = [v / 32767.5 - 1.0 for v in struct.unpack(f"<{dim}H", raw)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def completion_words(body: dict[str, Any], model: str, n_tokens: int, seed: int = 0) -> list[str]:
    """The pseudo-words a simulated model answers this request with."""
    messages = json.dumps(body.get("messages"), sort_keys=True, default=str)
    digest = hashlib.sha256(f"{seed}\0{model}\0{messages}".encode()).digest()
    rng = random.Random(digest)
    return rng.choices(VOCABULARY, k=n_tokens)


class SimulatedHandler(JobHandler):
    """Answers chat and embeddings jobs for the configured models with fake output."""

    def __init__(self, settings: SimulateSettings | None = None) -> None:
        self.settings = settings or SimulateSettings()
        super().__init__(self.settings.models)
        self._rng = random.Random(self.settings.seed)
        if self.settings.not_ready:
            self._update(ready=False, reason=self.settings.not_ready_reason)

    def set_ready(self, ready: bool, reason: str | None = None) -> None:
        """Toggle readiness at run time (demos, tests); every connected worker reports it."""
        self._update(ready=ready, reason=reason or self.settings.not_ready_reason)

    # ---- timing and failures ------------------------------------------------------------

    def _latency(self) -> float:
        s = self.settings
        if s.latency_jitter_s <= 0:
            return s.latency_s
        return max(0.0, s.latency_s + self._rng.uniform(-s.latency_jitter_s, s.latency_jitter_s))

    def _should_fail(self) -> bool:
        return self.settings.failure_rate > 0 and self._rng.random() < self.settings.failure_rate

    async def _start_job(self) -> None:
        """Wait out the time to first token, then maybe fail as configured."""
        fail = self._should_fail()
        await asyncio.sleep(self._latency())
        if fail:
            raise JobError(500, "simulated failure", "simulated_failure")

    # ---- chat ---------------------------------------------------------------------------

    def _words(self, job: JobFrame) -> list[str]:
        n = min(requested_max_tokens(job.body, self.settings.max_tokens), MAX_SIMULATED_TOKENS)
        return completion_words(job.body, job.model, n, self.settings.seed)

    @staticmethod
    def _usage(job: JobFrame, completion: int) -> Usage:
        prompt = words_in_messages(job.body)
        return Usage(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        )

    async def chat(self, job: JobFrame) -> tuple[dict[str, Any], Usage]:
        words = self._words(job)
        await self._start_job()
        tps = self.settings.tokens_per_second
        if tps > 0 and len(words) > 1:
            await asyncio.sleep((len(words) - 1) / tps)
        usage = self._usage(job, len(words))
        body = {
            "id": f"chatcmpl-{job.job_id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": job.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": " ".join(words)},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage.model_dump(),
        }
        return body, usage

    async def chat_stream(self, job: JobFrame, emit: ChunkSink) -> Usage:
        words = self._words(job)
        await self._start_job()
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                "id": f"chatcmpl-{job.job_id}",
                "object": "chat.completion.chunk",
                "created": created,
                "model": job.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        tps = self.settings.tokens_per_second
        per_chunk = max(1, math.ceil(tps * _MIN_CHUNK_INTERVAL_S)) if tps > 0 else 1
        await emit(chunk({"role": "assistant", "content": ""}), 0)
        for start in range(0, len(words), per_chunk):
            group = words[start : start + per_chunk]
            if start and tps > 0:
                await asyncio.sleep(len(group) / tps)
            text = " ".join(group)
            await emit(chunk({"content": text if start == 0 else f" {text}"}), len(group))
        await emit(chunk({}, "stop"), 0)
        return self._usage(job, len(words))

    # ---- embeddings ---------------------------------------------------------------------

    async def embeddings(self, job: JobFrame) -> tuple[dict[str, Any], Usage]:
        inputs = embedding_inputs(job.body)
        dim = job.body.get("dimensions") or self.settings.embedding_dim
        if isinstance(dim, bool) or not isinstance(dim, int) or not 0 < dim <= _MAX_EMBEDDING_DIM:
            raise JobError(400, "dimensions must be a positive integer", "invalid_request")
        await self._start_job()
        data = [
            {"object": "embedding", "index": i, "embedding": embed_text(text, dim)}
            for i, text in enumerate(inputs)
        ]
        tokens = sum(len(t.split()) if isinstance(t, str) else len(t) for t in inputs)
        usage = Usage(prompt_tokens=tokens, completion_tokens=0, total_tokens=tokens)
        body = {
            "object": "list",
            "data": data,
            "model": job.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return body, usage
