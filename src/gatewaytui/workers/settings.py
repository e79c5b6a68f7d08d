"""Configuration of workers: one pydantic model the CLI fills from flags, env or YAML.

`WorkerSettings` describes the connection to the gateway and the worker's identity;
exactly one of `simulate` or `upstream` says what actually answers jobs.
"""

from __future__ import annotations

import platform
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gatewaytui.schema.ids import WORKER_ID_BAD_CHARS, WORKER_ID_PATTERN

DEFAULT_GATEWAY_URL = "ws://127.0.0.1:8080"
WORKERS_CONNECT_PATH = "/api/workers/connect"

# The schema's one rule (RegisterFrame.id, the routes), so a bad id fails at start-up.
_ID_OK = re.compile(WORKER_ID_PATTERN)
_ID_BAD_CHARS = WORKER_ID_BAD_CHARS


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class BackoffSettings(_Settings):
    """Reconnect policy: capped exponential backoff with full jitter."""

    base_s: float = Field(default=0.5, gt=0, description="First retry ceiling, seconds.")
    cap_s: float = Field(default=30.0, gt=0, description="Largest retry delay, seconds.")
    stable_after_s: float = Field(
        default=30.0,
        ge=0,
        description="A connection that stayed up this long resets the backoff to base.",
    )


class SimulateSettings(_Settings):
    """A fake inference server: deterministic text and embeddings, timers only."""

    models: list[str] = Field(
        default_factory=lambda: ["sim-chat", "sim-embed"], min_length=1, max_length=512
    )
    latency_s: float = Field(default=0.2, ge=0, description="Time to first token.")
    latency_jitter_s: float = Field(default=0.0, ge=0, description="Latency varies by ±this.")
    tokens_per_second: float = Field(default=50.0, ge=0, description="0 means no delay.")
    max_tokens: int = Field(default=64, ge=0, description="When the request sets none.")
    failure_rate: float = Field(default=0.0, ge=0, le=1, description="Share of jobs that fail.")
    embedding_dim: int = Field(default=384, ge=1, le=65_536)
    seed: int = 0
    not_ready: bool = Field(default=False, description="Report ready=false (for demos).")
    not_ready_reason: str = "simulated: not ready"
    gpus: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="Pretend GPUs (their names) reported in heartbeats, load following jobs.",
    )
    gpu_mem_mb: int = Field(default=81_920, ge=1, description="Memory of each pretend GPU.")


class UpstreamSettings(_Settings):
    """A real OpenAI-compatible server the relay worker forwards jobs to."""

    url: str = Field(description="Base URL, with or without a trailing /v1.")
    api_key: str | None = Field(default=None, repr=False)
    models: list[str] | None = Field(
        default=None,
        max_length=512,
        description="Advertise exactly these models instead of /v1/models.",
    )
    discovery_interval_s: float = Field(default=30.0, gt=0, description="Re-list models.")
    retry_interval_s: float = Field(default=5.0, gt=0, description="Re-probe while down.")
    connect_timeout_s: float = Field(default=5.0, gt=0)
    timeout_s: float = Field(default=600.0, gt=0, description="Read timeout per request.")
    stream_usage: bool = Field(
        default=True, description="Ask the upstream for usage on streams (stream_options)."
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"upstream url must be http(s)://host[:port][/v1], got {value!r}")
        return value.strip()


class WorkerSettings(_Settings):
    """Everything `run_workers` needs. The key is never shown in repr or logs."""

    gateway_url: str = Field(
        default=DEFAULT_GATEWAY_URL,
        description="ws(s):// or http(s):// address of the gateway; the path is optional.",
    )
    key: str | None = Field(default=None, repr=False, description="Worker secret (Bearer).")
    id: str | None = Field(default=None, description="Worker id; default derives from host.")
    name: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    concurrency: int = Field(default=4, ge=1, le=100_000)
    batch_size: int = Field(default=32, ge=1, le=100_000)
    count: int = Field(default=1, ge=1, le=100_000, description="Workers in this process.")
    backoff: BackoffSettings = Field(default_factory=BackoffSettings)
    drain_timeout_s: float = Field(default=60.0, ge=0)
    open_timeout_s: float = Field(default=10.0, gt=0)
    register_timeout_s: float = Field(default=10.0, gt=0)
    max_connect_failures: int | None = Field(
        default=None, ge=1, description="Give up after this many failed attempts in a row."
    )
    max_frame_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="Largest frame accepted from the gateway."
    )
    compression: bool = Field(
        default=False,
        description="Offer permessage-deflate. Off: frames are small and each connection's "
        "zlib state costs memory (about 40 KB; it adds up in a 2,000-worker simulation).",
    )
    simulate: SimulateSettings | None = None
    upstream: UpstreamSettings | None = None

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str | None) -> str | None:
        if value is not None and (not _ID_OK.match(value) or len(value) > 120):
            raise ValueError(f"worker id must match {WORKER_ID_PATTERN} (≤120 chars)")
        return value

    @model_validator(mode="after")
    def _one_handler(self) -> WorkerSettings:
        if self.simulate is not None and self.upstream is not None:
            raise ValueError("choose either simulate or upstream, not both")
        return self

    def resolved_id(self) -> str:
        """The configured id, else one derived from the host name (stable across restarts)."""
        if self.id:
            return self.id
        host = _ID_BAD_CHARS.sub("-", platform.node()).strip("-") or "worker"
        return f"sim-{host}" if self.simulate is not None else host

    def worker_identities(self) -> list[tuple[str, str]]:
        """(id, name) of each worker this process runs: `<id>-1..N` when count > 1."""
        base = self.resolved_id()
        name = self.name or base
        if self.count == 1:
            return [(base, name)]
        return [(f"{base}-{i}", f"{name}-{i}") for i in range(1, self.count + 1)]

    def redacted(self) -> dict[str, Any]:
        """A dict for logs and debugging, with secrets masked."""
        data = self.model_dump()
        if data.get("key"):
            data["key"] = "***"
        if data.get("upstream") and data["upstream"].get("api_key"):
            data["upstream"]["api_key"] = "***"
        return data


def gateway_ws_url(url: str, connect_path: str = WORKERS_CONNECT_PATH) -> str:
    """Turn what a user types (`host:port`, http://…, ws://…/) into the connect endpoint."""
    raw = url.strip()
    if "://" not in raw:
        raw = f"ws://{raw}"
    parts = urlsplit(raw)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        raise ValueError(f"gateway url must be ws(s):// or http(s)://host:port, got {url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith(connect_path):
        path = f"{path}{connect_path}"
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def redact_url(url: str) -> str:
    """The URL without any user:password part, for logs."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))
