"""A relay job handler: forwards jobs to a real OpenAI-compatible server (llama-server, vLLM,
Ollama's /v1) and keeps the gateway told whether that server is answering.

Models come from `GET /v1/models`, re-listed periodically (and sooner while the upstream is
down, or right after a request could not reach it). Streams are parsed from the upstream's
SSE and forwarded chunk by chunk; usage-only chunks are folded into the final result frame.

The HTTP client is aiohttp: on the relay's hot path (every job is one upstream POST) it costs
a third to a quarter of the CPU httpx did, which tripled the relay's throughput
(bench/overhead.py, docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable
from typing import Any

import aiohttp
from aiohttp.http_exceptions import LineTooLong

from gatewaytui import __version__
from gatewaytui.schema.protocol import JobFrame, Usage
from gatewaytui.shared import codec
from gatewaytui.shared.passthrough import embeddings_summary
from gatewaytui.shared.sse import READ_BUFFER_BYTES, SseSplitter
from gatewaytui.shared.tls import tls_context
from gatewaytui.workers.job_handler import (
    ChunkSink,
    JobError,
    JobHandler,
    RawChunkSink,
    usage_from,
    words_in_messages,
)
from gatewaytui.workers.settings import UpstreamSettings

log = logging.getLogger("gatewaytui.workers.openai_relay")

_MAX_ERROR_CHARS = 1000
_JSON = {"Content-Type": "application/json"}


def upstream_base_url(url: str) -> str:
    """`http://h:p`, `http://h:p/`, `http://h:p/v1/` all become `http://h:p/v1`."""
    base = url.strip().rstrip("/")
    if not base.endswith("/v1"):
        base = f"{base}/v1"
    return base


class RelayHandler(JobHandler):
    """Forwards jobs to `settings.url` with one `aiohttp.ClientSession`."""

    def __init__(self, settings: UpstreamSettings) -> None:
        super().__init__(settings.models or [])
        self.settings = settings
        self.base_url = upstream_base_url(settings.url)
        self._session: aiohttp.ClientSession | None = None
        self._discovery: asyncio.Task[None] | None = None
        self._recheck = asyncio.Event()
        self.discoveries = 0
        # Not ready until the first successful listing.
        self._update(ready=False, reason="upstream not probed yet")

    # ---- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Open the HTTP session, probe the upstream once, then keep re-probing in the back."""
        if self._session is not None:
            return
        headers = {"User-Agent": f"gatewaytui-worker/{__version__}"}
        if self.settings.api_key:
            headers["Authorization"] = f"Bearer {self.settings.api_key}"
        self._session = aiohttp.ClientSession(
            headers=headers,
            # No cap of its own: the gateway never sends more jobs than the worker's slots.
            connector=aiohttp.TCPConnector(limit=0, ssl=tls_context(), keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(
                total=None,
                sock_connect=self.settings.connect_timeout_s,
                sock_read=self.settings.timeout_s,
            ),
            # The relay talks to a server the operator named; proxies from env would surprise.
            trust_env=False,
            raise_for_status=False,
            read_bufsize=READ_BUFFER_BYTES,
        )
        await self.discover()
        self._discovery = asyncio.create_task(self._discovery_loop(), name="relay-discovery")

    async def close(self) -> None:
        if self._discovery is not None:
            self._discovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._discovery
            self._discovery = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("RelayHandler.start() was not called")
        return self._session

    # ---- discovery ----------------------------------------------------------------------

    async def _discovery_loop(self) -> None:
        while True:
            interval = (
                self.settings.discovery_interval_s if self.ready else self.settings.retry_interval_s
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._recheck.wait()
            self._recheck.clear()
            await self.discover()

    async def discover(self) -> bool:
        """List the upstream's models; sets ready/not-ready with a reason. True if it answered."""
        self.discoveries += 1
        url = f"{self.base_url}/models"
        probe_timeout = aiohttp.ClientTimeout(total=self.settings.connect_timeout_s * 2)
        try:
            async with self.session.get(url, timeout=probe_timeout) as response:
                status, text = response.status, await response.text(errors="replace")
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._set_down(f"upstream unreachable at {self.base_url}: {_describe(exc)}")
            return False
        if status >= 400:
            message = _error_message(status, text)
            self._set_down(f"upstream GET /v1/models failed: {message}")
            return False
        try:
            listed = [m["id"] for m in json.loads(text)["data"] if isinstance(m.get("id"), str)]
        except (ValueError, KeyError, TypeError, AttributeError):
            self._set_down("upstream GET /v1/models returned an unexpected body")
            return False
        models = self.settings.models or sorted(set(listed))
        if not models:
            self._set_down("upstream serves no models")
            return False
        if not self.ready or models != self.models:
            log.info("upstream %s ready, models: %s", self.base_url, ", ".join(models))
        self._update(ready=True, models=models)
        return True

    def _set_down(self, reason: str) -> None:
        if self.ready or reason != self.reason:
            log.warning("%s", reason)
        self._update(ready=False, reason=reason)

    def _unreachable(self, exc: aiohttp.ClientError | TimeoutError) -> JobError:
        """A request could not reach the upstream: re-probe now and tell the gateway why."""
        self._recheck.set()
        if isinstance(exc, TimeoutError):
            return JobError(504, f"upstream timed out: {_describe(exc)}", "upstream_timeout")
        return JobError(502, f"upstream unreachable: {_describe(exc)}", "upstream_unreachable")

    # ---- jobs ---------------------------------------------------------------------------

    def _body(self, job: JobFrame, *, stream: bool) -> dict[str, Any]:
        body = dict(job.body)
        body["model"] = job.model
        if job.kind == "chat":
            body["stream"] = stream
            if not stream:
                body.pop("stream_options", None)
            elif self.settings.stream_usage:
                options = dict(body.get("stream_options") or {})
                options["include_usage"] = True
                body["stream_options"] = options
        return body

    async def _post_raw(self, path: str, body: dict[str, Any]) -> bytes:
        try:
            async with self.session.post(
                f"{self.base_url}{path}", data=codec.dumps(body), headers=_JSON
            ) as response:
                status, raw = response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._unreachable(exc) from exc
        if status >= 400:
            raise _upstream_error(status, raw.decode("utf-8", "replace"))
        return raw

    async def embeddings_raw(self, job: JobFrame) -> tuple[str, Usage]:
        """The upstream's answer as its text, unparsed (only its usage is read)."""
        raw = await self._post_raw("/embeddings", self._body(job, stream=False))
        summary = embeddings_summary(raw)
        if summary is None:  # not an embeddings body: parse (and fail) as `embeddings` does
            data, usage = self._embeddings_answer(self._parse(raw))
            return codec.dumps_text(data), usage
        return raw.decode("utf-8", "replace"), usage_from(summary[2]) or Usage()

    def _embeddings_answer(self, data: dict[str, Any]) -> tuple[dict[str, Any], Usage]:
        return data, usage_from(data.get("usage")) or Usage()

    async def _post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._parse(await self._post_raw(path, body))

    @staticmethod
    def _parse(raw: bytes) -> dict[str, Any]:
        try:
            data = codec.loads(raw)
        except ValueError as exc:
            raise JobError(502, "upstream body is not JSON", "bad_upstream") from exc
        if not isinstance(data, dict):
            raise JobError(502, "upstream returned an unexpected body", "bad_upstream")
        return data

    async def chat(self, job: JobFrame) -> tuple[dict[str, Any], Usage]:
        data = await self._post_json("/chat/completions", self._body(job, stream=False))
        usage = usage_from(data.get("usage")) or _estimated_usage(job, data)
        return data, usage

    async def embeddings(self, job: JobFrame) -> tuple[dict[str, Any], Usage]:
        data = await self._post_json("/embeddings", self._body(job, stream=False))
        usage = usage_from(data.get("usage")) or Usage()
        return data, usage

    async def chat_stream(self, job: JobFrame, emit: ChunkSink) -> Usage:
        async def each(chunks: list[str], _tokens: int, _usage: bool) -> None:
            for text in chunks:  # only content chunks reach here (usage_passthrough off)
                chunk = codec.loads(text)
                await emit(chunk, 1 if _has_output(chunk.get("choices") or []) else 0)

        return await self._stream(job, each, usage_passthrough=False)

    async def chat_stream_raw(self, job: JobFrame, emit: RawChunkSink) -> Usage:
        return await self._stream(job, emit, usage_passthrough=True)

    async def _stream(self, job: JobFrame, emit: RawChunkSink, *, usage_passthrough: bool) -> Usage:
        """Read the upstream's SSE as bytes; each read becomes one `emit` of the chunks it
        completed (never waiting for more), their texts unchanged. The usage-only chunk is
        folded into the result's usage, and also passed on when the client asked for it
        (`usage_passthrough`: the gateway then sends it exactly as the upstream wrote it)."""
        client_options = job.body.get("stream_options")
        client_wants_usage = isinstance(client_options, dict) and bool(
            client_options.get("include_usage")
        )
        pass_usage = usage_passthrough and client_wants_usage
        body = self._body(job, stream=True)
        usage: Usage | None = None
        tokens_out = 0
        loads = codec.loads
        try:
            async with self.session.post(
                f"{self.base_url}/chat/completions", data=codec.dumps(body), headers=_JSON
            ) as response:
                if response.status >= 400:
                    text = (await response.read()).decode("utf-8", "replace")
                    raise _upstream_error(response.status, text)
                splitter = SseSplitter(2 * READ_BUFFER_BYTES)
                async for data in response.content.iter_any():
                    texts, tokens, usage_passed, usage, done = _read_batch(
                        splitter.feed(data), pass_usage, usage, loads
                    )
                    if texts:
                        tokens_out += tokens
                        await emit(texts, tokens, usage_passed)
                    if done:
                        break
                    if splitter.overflow:
                        raise _line_too_long()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._unreachable(exc) from exc
        except LineTooLong as exc:  # never the line itself: it is the upstream's output
            raise _line_too_long() from exc
        if usage is None:
            prompt = words_in_messages(job.body)
            usage = Usage(
                prompt_tokens=prompt, completion_tokens=tokens_out, total_tokens=prompt + tokens_out
            )
        return usage


def _read_batch(
    payloads: Iterable[bytes], pass_usage: bool, usage: Usage | None, loads: Any
) -> tuple[list[str], int, bool, Usage | None, bool]:
    """The chunks one read completed: their texts (unchanged), the tokens they carry, whether
    the usage chunk is among the texts, the usage so far, and whether `[DONE]` came."""
    texts: list[str] = []
    tokens = 0
    usage_passed = False
    for payload in payloads:
        if payload.strip() == b"[DONE]":
            return texts, tokens, usage_passed, usage, True
        chunk = _parse_chunk(payload, loads)
        usage = usage_from(chunk.get("usage")) or usage
        choices = chunk.get("choices")
        if not choices:  # a usage-only chunk: folded into the result
            if pass_usage:
                texts.append(payload.decode("utf-8", "replace"))
                usage_passed = True
            continue
        tokens += _has_output(choices)
        texts.append(payload.decode("utf-8", "replace"))
    return texts, tokens, usage_passed, usage, False


def _line_too_long() -> JobError:
    message = f"upstream stream: a line longer than {2 * READ_BUFFER_BYTES} bytes"
    return JobError(502, message, "bad_upstream")


def _parse_chunk(payload: bytes | str, loads: Any = json.loads) -> dict[str, Any]:
    try:
        chunk = loads(payload)
    except ValueError as exc:
        raise JobError(502, "upstream stream chunk is not JSON", "bad_upstream") from exc
    if not isinstance(chunk, dict):
        raise JobError(502, "upstream stream sent an unexpected chunk", "bad_upstream")
    if "error" in chunk and "choices" not in chunk:
        error = chunk["error"]
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise JobError(502, f"upstream stream error: {message}"[:_MAX_ERROR_CHARS], "upstream")
    return chunk


def _has_output(choices: list[Any]) -> bool:
    for choice in choices:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict) and (delta.get("content") or delta.get("tool_calls")):
            return True
    return False


def _estimated_usage(job: JobFrame, data: dict[str, Any]) -> Usage:
    words = 0
    for choice in data.get("choices") or []:
        content = (choice.get("message") or {}).get("content") if isinstance(choice, dict) else None
        if isinstance(content, str):
            words += len(content.split())
    prompt = words_in_messages(job.body)
    return Usage(prompt_tokens=prompt, completion_tokens=words, total_tokens=prompt + words)


def _error_message(status: int, text: str) -> str:
    """`HTTP 500: <the upstream's own message>`, from OpenAI, FastAPI or plain-text bodies."""
    message = text.strip()
    with contextlib.suppress(ValueError):
        body = json.loads(text)
        if isinstance(body, dict):
            error = body.get("error", body.get("detail", body.get("message")))
            if isinstance(error, dict):
                error = error.get("message", error)
            if error is not None:
                message = error if isinstance(error, str) else json.dumps(error)
    return f"HTTP {status}: {message or 'no body'}"[:_MAX_ERROR_CHARS]


def _upstream_error(status: int, text: str) -> JobError:
    return JobError(status, f"upstream returned {_error_message(status, text)}", "upstream_error")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
