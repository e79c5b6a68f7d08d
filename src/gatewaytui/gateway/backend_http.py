"""Calls to a backend's upstream: probes (`/v1/models`, Ollama's `/api/tags`), chat (JSON and
SSE) and embeddings, over one shared `httpx.AsyncClient` with each backend's own timeout.

Errors become `UpstreamError` with a status, a code and a short message that never contains
the backend's key (an upstream that echoes the key in an error body gets it redacted).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

import gatewaytui
from gatewaytui.schema.backends import ENV_REF_PREFIX, BackendSpec, backend_root_url
from gatewaytui.shared.pool import ShardedTransport, tls_context
from gatewaytui.shared.sse import sse_data

MAX_ERROR_CHARS = 300
PROBE_TIMEOUT_CAP_S = 15.0
REDACTED = "[redacted]"


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


def make_client(transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """A client for backend calls (probes use one with a small default pool)."""
    return httpx.AsyncClient(
        headers={"User-Agent": f"gatewaytui-gateway/{gatewaytui.__version__}"},
        limits=httpx.Limits(max_connections=32, max_keepalive_connections=8),
        verify=tls_context(),
        transport=transport,
        follow_redirects=False,
        # The operator named these servers; proxies from the environment would surprise.
        trust_env=False,
    )


PER_SHARD = 1  # connections per pool (bench/backend_overhead.py: 1 beat 2, 4 and 8)
MAX_SHARDS = 128


class BackendClient:
    """One backend's HTTP client, pools sized by its `max_concurrency` (the scheduler never
    sends it more). After an edit that resizes it, the old one closes when its calls end."""

    def __init__(self, max_concurrency: int) -> None:
        shards = max(1, min(MAX_SHARDS, math.ceil(max_concurrency / PER_SHARD)))
        per_shard = math.ceil(max_concurrency / shards) + 1  # +1: a probe may share it
        self.size = max_concurrency
        self.client = make_client(ShardedTransport(shards, per_shard))
        self.users = 0
        self.retired = False

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[httpx.AsyncClient]:
        self.users += 1
        try:
            yield self.client
        finally:
            self.users -= 1
            if self.retired and self.users == 0:
                await self.client.aclose()

    async def retire(self) -> None:
        """No new calls; closed now if idle, else by its last call."""
        self.retired = True
        if self.users == 0:
            await self.client.aclose()


def resolve_key(spec: BackendSpec) -> str | None:
    """The key to send: inline, or read from the environment for `env:VAR` (at call time)."""
    if spec.api_key is None:
        return None
    secret = spec.api_key.get_secret_value()
    if not secret.startswith(ENV_REF_PREFIX):
        return secret
    name = secret[len(ENV_REF_PREFIX) :]
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


def timeout_for(spec: BackendSpec, cap: float | None = None) -> httpx.Timeout:
    total = spec.timeout_s if cap is None else min(spec.timeout_s, cap)
    return httpx.Timeout(total, connect=min(total, 10.0))


def _headers(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def describe_http_error(exc: httpx.HTTPError) -> str:
    """A few words for a transport failure: `connection refused`, `timed out after 5s`."""
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect timeout"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    cause: BaseException | None = exc
    seen = 0
    while cause is not None and seen < 10:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, OSError) and type(cause) is not OSError and cause.strerror:
            return cause.strerror.lower()
        text = str(cause)
        if "Errno 111" in text or "Connection refused" in text:
            return "connection refused"
        if "Name or service not known" in text or "nodename nor servname" in text:
            return "cannot resolve host"
        cause = cause.__cause__ or cause.__context__
        seen += 1
    return str(exc) or type(exc).__name__


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


def _transport_error(spec: BackendSpec, exc: httpx.HTTPError, key: str | None) -> UpstreamError:
    text = redact(describe_http_error(exc), key)
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return UpstreamError(
            f"backend {spec.id} unreachable: {text}", code="backend_unreachable", retryable=True
        )
    if isinstance(exc, httpx.TimeoutException):
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


async def probe(client: httpx.AsyncClient, spec: BackendSpec) -> ProbeOutcome:
    """List the backend's models and time it. Never raises for upstream trouble."""
    url = probe_url(spec)
    path = url[len(backend_root_url(spec.url)) :] or url
    started = time.perf_counter()
    key: str | None = None
    try:
        key = resolve_key(spec)
        response = await client.get(
            url, headers=_headers(key), timeout=timeout_for(spec, PROBE_TIMEOUT_CAP_S)
        )
    except UpstreamError as exc:
        return ProbeOutcome(False, error=exc.message)
    except httpx.HTTPError as exc:
        return ProbeOutcome(False, error=f"GET {path}: {redact(describe_http_error(exc), key)}")
    latency = round((time.perf_counter() - started) * 1000, 1)
    if response.status_code >= 400:
        text = redact(error_text(response.status_code, response.text), key)
        return ProbeOutcome(False, latency, error=f"GET {path}: {text}")
    if response.status_code >= 300:
        return ProbeOutcome(
            False, latency, error=f"GET {path}: HTTP {response.status_code} (a redirect: check URL)"
        )
    try:
        models = parse_model_list(spec, response.json())
    except ValueError as exc:
        return ProbeOutcome(False, latency, error=f"GET {path}: not a model list: {exc}")
    return ProbeOutcome(True, latency, models)


# ---- jobs -----------------------------------------------------------------------------------


async def post_json(
    client: httpx.AsyncClient, spec: BackendSpec, path: str, body: dict[str, Any]
) -> dict[str, Any]:
    key = resolve_key(spec)
    try:
        response = await client.post(
            f"{spec.url}{path}", json=body, headers=_headers(key), timeout=timeout_for(spec)
        )
    except httpx.HTTPError as exc:
        raise _transport_error(spec, exc, key) from None
    if response.status_code >= 300:
        raise _status_error(spec, response.status_code, response.text, key)
    try:
        data = response.json()
    except ValueError:
        raise UpstreamError(
            f"backend {spec.id}: the answer is not JSON", code="bad_backend_response"
        ) from None
    if not isinstance(data, dict):
        raise UpstreamError(
            f"backend {spec.id}: the answer is not a JSON object", code="bad_backend_response"
        )
    return data


async def stream_chat(
    client: httpx.AsyncClient, spec: BackendSpec, body: dict[str, Any]
) -> AsyncIterator[dict[str, Any]]:
    """The upstream's SSE chunks as dicts (until `[DONE]`). A JSON answer to a stream request
    (some servers ignore `stream`) is yielded whole, marked with `"object": "chat.completion"`.
    """
    key = resolve_key(spec)
    request = client.build_request(
        "POST",
        f"{spec.url}/chat/completions",
        json=body,
        headers={**_headers(key), "Accept": "text/event-stream"},
        timeout=timeout_for(spec),
    )
    try:
        response = await client.send(request, stream=True)
    except httpx.HTTPError as exc:
        raise _transport_error(spec, exc, key) from None
    try:
        if response.status_code >= 300:
            text = (await response.aread()).decode("utf-8", "replace")
            raise _status_error(spec, response.status_code, text, key)
        if "text/event-stream" not in response.headers.get("content-type", ""):
            raw = await response.aread()
            try:
                whole = json.loads(raw)
            except ValueError:
                raise UpstreamError(
                    f"backend {spec.id}: the stream is neither SSE nor JSON",
                    code="bad_backend_response",
                ) from None
            if isinstance(whole, dict):
                yield whole
            return
        async for payload in sse_data(response.aiter_lines()):
            if payload.strip() == "[DONE]":
                return
            try:
                chunk = json.loads(payload)
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
            yield chunk
    except httpx.HTTPError as exc:
        raise _transport_error(spec, exc, key) from None
    finally:
        await response.aclose()
