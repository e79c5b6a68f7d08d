"""Calls to a backend's upstream: probes (`/v1/models`, Ollama's `/api/tags`), chat (JSON and
SSE) and embeddings, each with the backend's own timeout.

The HTTP client is aiohttp: one `aiohttp.ClientSession` per backend (`BackendClient`, its
connection limit the backend's `max_concurrency`) and one shared by the probes. Per proxied
call httpx cost the gateway ~1–1.8 ms of CPU, most of it pool bookkeeping, anyio cancel scopes
and sniffio lookups; the relay worker's switch to aiohttp cut its per-POST cost 3–4×
(bench/backend_overhead.py, bench/overhead.py, docs/benchmarks.md). A session must be made
inside a running loop, so each is made on its first use.

Errors become `UpstreamError` with a status, a code and a short message that never contains
the backend's key (an upstream that echoes the key in an error body gets it redacted).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import socket
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp.http_exceptions import LineTooLong

import gatewaytui
from gatewaytui.schema.backends import (
    ENV_REF_PREFIX,
    BackendSpec,
    backend_root_url,
    env_ref_problem,
)
from gatewaytui.shared import codec
from gatewaytui.shared.sse import READ_BUFFER_BYTES, SseSplitter
from gatewaytui.shared.tls import tls_context

MAX_ERROR_CHARS = 300
PROBE_TIMEOUT_CAP_S = 15.0
CONNECT_TIMEOUT_CAP_S = 10.0
PROBE_CONNECTIONS = 32  # the probe session's pool (probes of all backends share it)
# Idle connections are closed after this: under uvicorn's 5 s keep-alive (vLLM, SGLang, the
# test upstream), so a request is not sent on a connection the server is closing.
KEEPALIVE_S = 4.0
# aiohttp reads a stream line by line within twice this; a longer SSE line fails the call.
REDACTED = "[redacted]"
JSON_HEADERS = {"Content-Type": "application/json"}
SSE_HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream"}


class UpstreamError(Exception):
    """A failed upstream call: `status` to pass on, `retryable` if another target may do."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 502,
        code: str = "backend_error",
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.retryable = retryable


def make_client(limit: int = PROBE_CONNECTIONS) -> aiohttp.ClientSession:
    """A session for backend calls, at most `limit` connections. Call it inside a running loop.

    No session-wide timeout (each request passes `timeout_for(spec)`), no proxies from the
    environment (the operator named these servers), no redirects (each request says so).
    """
    return aiohttp.ClientSession(
        headers={"User-Agent": f"gatewaytui-gateway/{gatewaytui.__version__}"},
        connector=aiohttp.TCPConnector(
            limit=limit, ssl=tls_context(), keepalive_timeout=KEEPALIVE_S
        ),
        timeout=aiohttp.ClientTimeout(total=None),
        trust_env=False,
        raise_for_status=False,
        read_bufsize=READ_BUFFER_BYTES,
    )


class BackendClient:
    """One backend's HTTP session, at most `max_concurrency` connections (the scheduler never
    sends it more calls). The session is made on first use (aiohttp wants a running loop; the
    records are built before there is one). After an edit that resizes it, the old one closes
    when its calls end."""

    def __init__(self, max_concurrency: int) -> None:
        self.size = max_concurrency
        self._session: aiohttp.ClientSession | None = None
        self.users = 0
        self.retired = False

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The session, or None before the first call."""
        return self._session

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[aiohttp.ClientSession]:
        if self._session is None:
            self._session = make_client(self.size)
        self.users += 1
        try:
            yield self._session
        finally:
            self.users -= 1
            if self.retired and self.users == 0:
                await self._close()

    async def retire(self) -> None:
        """No new calls; closed now if idle, else by its last call."""
        self.retired = True
        if self.users == 0:
            await self._close()

    async def _close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def resolve_key(spec: BackendSpec) -> str | None:
    """The key to send: inline, or read from the environment for `env:VAR` (at call time)."""
    if spec.api_key is None:
        return None
    secret = spec.api_key.get_secret_value()
    if not secret.startswith(ENV_REF_PREFIX):
        return secret
    name = secret[len(ENV_REF_PREFIX) :]
    problem = env_ref_problem(name)  # a store file edited by hand is held to the rule too
    if problem is not None:
        raise UpstreamError(problem, code="backend_key_refused", retryable=False)
    value = os.environ.get(name)
    if not value:
        raise UpstreamError(
            f"environment variable {name} (the api_key reference) is not set on the gateway",
            code="backend_key_missing",
            retryable=True,
        )
    return value


def redact(text: str, key: str | None) -> str:
    """`text` without the key (and without its long prefixes an upstream might echo)."""
    if key and len(key) >= 4:
        text = text.replace(key, REDACTED)
    return text


def timeout_for(spec: BackendSpec, cap: float | None = None) -> aiohttp.ClientTimeout:
    """`timeout_s` (or `cap`, if smaller) for the connection (waiting for a free one included;
    the connect itself at most 10 s) and for each read: for a stream, the longest gap between
    two chunks. No limit on the whole call, as with httpx before."""
    return _timeout(spec.timeout_s if cap is None else min(spec.timeout_s, cap))


@functools.lru_cache(maxsize=64)
def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    """One (immutable) timeout object per value, not one per call: the hot path."""
    return aiohttp.ClientTimeout(
        total=None,
        connect=seconds,
        sock_connect=min(seconds, CONNECT_TIMEOUT_CAP_S),
        sock_read=seconds,
    )


def _headers(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


_CALL_HEADERS: dict[tuple[str | None, int], dict[str, str]] = {}


def _call_headers(key: str | None, extra: dict[str, str]) -> dict[str, str]:
    """The key's header with `extra` (JSON_HEADERS or SSE_HEADERS), built once per key."""
    found = _CALL_HEADERS.get((key, id(extra)))
    if found is None:
        if len(_CALL_HEADERS) > 64:  # keys rotate: never grows without bound
            _CALL_HEADERS.clear()
        found = _CALL_HEADERS[(key, id(extra))] = {**_headers(key), **extra}
    return found


def _encode(body: dict[str, Any]) -> bytes:
    """The request body: compact UTF-8 JSON (no NaN can be in it: the gateway's request
    parser refuses NaN and Infinity)."""
    return codec.dumps(body)


def describe_http_error(exc: BaseException) -> str:
    """A few words for a transport failure: `connection refused`, `connect timeout`."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "connect timeout"
    if isinstance(exc, TimeoutError):  # aiohttp.SocketTimeoutError: a read
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "cannot resolve host"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected without sending a response"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "peer closed connection without sending complete message body"
    cause: BaseException | None = (
        exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
    )
    seen = 0
    while cause is not None and seen < 10:
        words = _describe_cause(cause)
        if words is not None:
            return words
        cause = cause.__cause__ or cause.__context__
        seen += 1
    return str(exc) or type(exc).__name__


def _describe_cause(cause: BaseException) -> str | None:
    """Words for one link of an exception's cause chain, if it says what went wrong."""
    if isinstance(cause, ConnectionRefusedError) or (
        isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED
    ):
        return "connection refused"
    if isinstance(cause, socket.gaierror):
        return "cannot resolve host"
    if isinstance(cause, OSError) and not isinstance(cause, aiohttp.ClientError):
        if isinstance(cause, ssl.SSLError) or type(cause) is not OSError:
            if cause.strerror:
                return cause.strerror.lower()
        elif cause.errno:  # asyncio's `OSError(errno, "Connect call failed …")`
            return os.strerror(cause.errno).lower()
    text = str(cause)
    if "Errno 111" in text or "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "cannot resolve host"
    return None


def error_text(status: int, body: str) -> str:
    """`HTTP 401: <the upstream's own message>` from OpenAI, FastAPI or plain-text bodies."""
    message = " ".join(body.split())
    with contextlib.suppress(ValueError):
        parsed = json.loads(body)
        if isinstance(parsed, dict):
            error = parsed.get("error", parsed.get("detail", parsed.get("message")))
            if isinstance(error, dict):
                error = error.get("message", error)
            if error is not None:
                message = error if isinstance(error, str) else json.dumps(error)
    return f"HTTP {status}: {message or 'no body'}"[:MAX_ERROR_CHARS]


def _transport_error(spec: BackendSpec, exc: BaseException, key: str | None) -> UpstreamError:
    text = redact(describe_http_error(exc), key)
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return UpstreamError(
            f"backend {spec.id} unreachable: {text}", code="backend_unreachable", retryable=True
        )
    if isinstance(exc, TimeoutError):
        return UpstreamError(
            f"backend {spec.id} did not answer within {spec.timeout_s:g}s",
            status=504,
            code="backend_timeout",
        )
    return UpstreamError(f"backend {spec.id}: {text}", code="backend_unreachable")


def _status_error(spec: BackendSpec, status: int, body: str, key: str | None) -> UpstreamError:
    if status < 400 or status > 599:
        return UpstreamError(f"backend {spec.id} answered HTTP {status}", code="backend_error")
    return UpstreamError(
        f"backend {spec.id}: {redact(error_text(status, body), key)}",
        status=status,
        code="backend_error",
        retryable=status in (429, 502, 503, 504),
    )


# ---- probes ---------------------------------------------------------------------------------


@dataclass
class ProbeOutcome:
    ok: bool
    latency_ms: float | None = None
    models: list[str] = field(default_factory=list)
    error: str | None = None
    probed_at: float = field(default_factory=time.time)


def probe_url(spec: BackendSpec) -> str:
    if spec.type == "ollama":
        return f"{backend_root_url(spec.url)}/api/tags"
    return f"{spec.url}/models"


def parse_model_list(spec: BackendSpec, data: Any) -> list[str]:
    """Model names from an OpenAI `{"data": [{"id"}]}` or Ollama `{"models": [{"name"}]}`."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    if spec.type == "ollama" and isinstance(data.get("models"), list):
        entries, key = data["models"], "name"
    elif isinstance(data.get("data"), list):
        entries, key = data["data"], "id"
    else:
        raise ValueError("no model list in it ('data' or 'models')")
    names: list[str] = []
    for entry in entries:
        if isinstance(entry, dict):
            name = entry.get(key) or entry.get("model") or entry.get("id")
            if isinstance(name, str) and name and name not in names:
                names.append(name)
    return names


async def probe(client: aiohttp.ClientSession, spec: BackendSpec) -> ProbeOutcome:
    """List the backend's models and time it. Never raises for upstream trouble."""
    url = probe_url(spec)
    path = url[len(backend_root_url(spec.url)) :] or url
    started = time.perf_counter()
    key: str | None = None
    try:
        key = resolve_key(spec)
        async with client.get(
            url,
            headers=_headers(key),
            timeout=timeout_for(spec, PROBE_TIMEOUT_CAP_S),
            allow_redirects=False,
        ) as response:
            status, raw = response.status, await response.read()
    except UpstreamError as exc:
        return ProbeOutcome(False, error=exc.message)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return ProbeOutcome(False, error=f"GET {path}: {redact(describe_http_error(exc), key)}")
    latency = round((time.perf_counter() - started) * 1000, 1)
    if status >= 400:
        text = redact(error_text(status, raw.decode("utf-8", "replace")), key)
        return ProbeOutcome(False, latency, error=f"GET {path}: {text}")
    if status >= 300:
        return ProbeOutcome(
            False, latency, error=f"GET {path}: HTTP {status} (a redirect: check URL)"
        )
    try:
        models = parse_model_list(spec, json.loads(raw))
    except ValueError as exc:
        return ProbeOutcome(False, latency, error=f"GET {path}: not a model list: {exc}")
    return ProbeOutcome(True, latency, models)


# ---- jobs -----------------------------------------------------------------------------------


def _post(
    client: aiohttp.ClientSession,
    spec: BackendSpec,
    path: str,
    body: dict[str, Any],
    key: str | None,
    headers: dict[str, str],
) -> Any:
    """A job POST to the backend (use with `async with`): its key, its timeout, no redirects."""
    return client.post(
        f"{spec.url}{path}",
        data=_encode(body),
        headers=_call_headers(key, headers),
        timeout=timeout_for(spec),
        allow_redirects=False,
    )


async def post_raw(
    client: aiohttp.ClientSession, spec: BackendSpec, path: str, body: dict[str, Any]
) -> bytes:
    """A job POST; the answer's body as it came (an error status raises)."""
    key = resolve_key(spec)
    try:
        async with _post(client, spec, path, body, key, JSON_HEADERS) as response:
            status, raw = response.status, await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _transport_error(spec, exc, key) from None
    if status >= 300:
        raise _status_error(spec, status, raw.decode("utf-8", "replace"), key)
    assert isinstance(raw, bytes)
    return raw


async def post_json(
    client: aiohttp.ClientSession, spec: BackendSpec, path: str, body: dict[str, Any]
) -> dict[str, Any]:
    return parse_answer(spec, await post_raw(client, spec, path, body))


def parse_answer(spec: BackendSpec, raw: bytes) -> dict[str, Any]:
    """An answer's body as a JSON object, or `bad_backend_response`."""
    try:
        answer = codec.loads(raw)
    except ValueError:
        raise UpstreamError(
            f"backend {spec.id}: the answer is not JSON", code="bad_backend_response"
        ) from None
    if not isinstance(answer, dict):
        raise UpstreamError(
            f"backend {spec.id}: the answer is not a JSON object", code="bad_backend_response"
        )
    return answer


Batch = list[tuple[bytes, dict[str, Any]]]
"""Stream chunks that arrived together: each as the upstream's own JSON bytes and parsed."""


async def stream_chat(
    client: aiohttp.ClientSession, spec: BackendSpec, body: dict[str, Any]
) -> AsyncIterator[dict[str, Any]]:
    """The upstream's SSE chunks as dicts (until `[DONE]`). A JSON answer to a stream request
    (some servers ignore `stream`) is yielded whole, marked with `"object": "chat.completion"`.

    The connection is held until the generator ends: close it (`contextlib.aclosing`) when
    stopping early, or the connection goes back only when the generator is collected.
    """
    async with contextlib.aclosing(stream_chat_batches(client, spec, body)) as batches:
        async for batch in batches:
            if isinstance(batch, dict):
                yield batch
                return
            for _, chunk in batch:
                yield chunk


async def stream_chat_batches(
    client: aiohttp.ClientSession, spec: BackendSpec, body: dict[str, Any]
) -> AsyncGenerator[Batch | dict[str, Any], None]:
    """The hot path of a backend stream: every read from the socket becomes one batch of the
    chunks it completed, each kept as the upstream's bytes (passed on as they are) next to
    its parsed form (for usage, tokens, errors). Never waits to fill a batch: the first chunk
    goes out as soon as it is read. A JSON answer to a stream request comes as one dict.
    Ends at `[DONE]` (or the end of the body); holds the connection like `stream_chat`.
    """
    key = resolve_key(spec)
    try:
        async with _post(client, spec, "/chat/completions", body, key, SSE_HEADERS) as response:
            if response.status >= 300:
                text = (await response.read()).decode("utf-8", "replace")
                raise _status_error(spec, response.status, text, key)
            if "text/event-stream" not in response.headers.get("Content-Type", ""):
                raw = await response.read()
                try:
                    whole = codec.loads(raw)
                except ValueError:
                    raise UpstreamError(
                        f"backend {spec.id}: the stream is neither SSE nor JSON",
                        code="bad_backend_response",
                    ) from None
                if isinstance(whole, dict):
                    yield whole
                return
            splitter = SseSplitter(2 * READ_BUFFER_BYTES)
            async for data in response.content.iter_any():
                batch, done = _parse_batch(spec, key, splitter.feed(data))
                if batch:
                    yield batch
                if done:
                    return
                if splitter.overflow:
                    raise _line_too_long(spec)
            batch, _ = _parse_batch(spec, key, splitter.close())
            if batch:
                yield batch
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _transport_error(spec, exc, key) from None
    except LineTooLong:  # never the line itself in the message: it is the upstream's output
        raise _line_too_long(spec) from None


def _line_too_long(spec: BackendSpec) -> UpstreamError:
    return UpstreamError(
        f"backend {spec.id}: a stream line is longer than {2 * READ_BUFFER_BYTES} bytes",
        code="bad_backend_response",
    )


def _parse_batch(spec: BackendSpec, key: str | None, payloads: list[bytes]) -> tuple[Batch, bool]:
    """Parse what one read completed; True once `[DONE]` was among it (the rest is dropped)."""
    batch: Batch = []
    loads = codec.loads
    for payload in payloads:
        if payload.startswith(b"[DONE]") or payload.strip() == b"[DONE]":
            return batch, True
        try:
            chunk = loads(payload)
        except ValueError:
            raise UpstreamError(
                f"backend {spec.id}: a stream chunk is not JSON", code="bad_backend_response"
            ) from None
        if not isinstance(chunk, dict):
            continue
        if "error" in chunk and "choices" not in chunk:
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else str(error)
            raise UpstreamError(
                redact(f"backend {spec.id}: stream error: {message}", key)[:MAX_ERROR_CHARS]
            )
        batch.append((payload, chunk))
    return batch, False
