"""Typed view of the resolved options, read once at start so hot paths never parse.

The descriptors in `options.py` are the one source of every default and every range or choice
check; this module only maps each option to a typed attribute (its default derived from the
descriptor, never repeated here).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gatewaytui.gateway.api_keys import parse_api_keys
from gatewaytui.gateway.options import SCHEDULER_STRATEGIES, ResolvedOptions, resolve_options

__all__ = ["SCHEDULER_STRATEGIES", "GatewayConfig"]


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _api_keys(text: str) -> tuple[str, ...]:
    """The entries, checked here so `serve` and `options` refuse a bad one at start."""
    entries = _split(text)
    parse_api_keys(entries)
    return entries


# attribute -> (plugin, option id, conversion of the resolved value)
_SOURCES: dict[str, tuple[str, str, Callable[[Any], Any]]] = {
    "host": ("server", "host", str),
    "port": ("server", "port", int),
    "drain_timeout": ("server", "drain_timeout", float),
    "state_stream_rate": ("server", "state_stream_rate", float),
    "state_keepalive": ("server", "state_keepalive", float),
    "event_log_size": ("server", "event_log_size", int),
    "api_keys": ("server", "api_keys", _api_keys),
    "worker_key": ("server", "worker_key", str),
    "operator_tokens": ("server", "operator_tokens", _split),
    "viewer_tokens": ("server", "viewer_tokens", _split),
    "open": ("server", "open", bool),
    "token_file": ("server", "token_file", str),
    "allowed_hosts": ("server", "allowed_hosts", _split),
    "max_body_bytes": ("server", "max_body_bytes", int),
    "header_timeout": ("server", "header_timeout", float),
    "body_timeout": ("server", "body_timeout", float),
    "max_connections": ("server", "max_connections", int),
    "scheduler": ("llm", "scheduler", str),
    "queue_size": ("llm", "queue_size", int),
    "queue_timeout": ("llm", "queue_timeout", float),
    "request_timeout": ("llm", "request_timeout", float),
    "max_parallel_embeddings": ("llm", "max_parallel_embeddings", int),
    "embedding_chunk_attempts": ("llm", "embedding_chunk_attempts", int),
    "model_family_matching": ("llm", "model_family_matching", bool),
    "heartbeat_interval": ("workers", "heartbeat_interval", float),
    "heartbeat_expiry": ("workers", "heartbeat_expiry", float),
    "gone_retention": ("workers", "gone_retention", float),
    "max_frame_bytes": ("workers", "max_frame_bytes", int),
    "first_frame_timeout": ("workers", "first_frame_timeout", float),
    "unresponsive_after": ("workers", "unresponsive_after", int),
    "metrics_enabled": ("metrics", "enabled", bool),
    "metrics_per_worker": ("metrics", "per_worker", bool),
    "mcp_max_request_bytes": ("mcp", "max_request_bytes", int),
    "mcp_max_response_bytes": ("mcp", "max_response_bytes", int),
    "mcp_heartbeat_interval": ("mcp", "heartbeat_interval", float),
    "mcp_dead_after": ("mcp", "dead_after", float),
    "mcp_client_concurrency": ("mcp", "client_concurrency", int),
    "mcp_call_timeout": ("mcp", "call_timeout", float),
    "backends_store_path": ("backends", "store_path", str),
    "backends_probe_interval": ("backends", "probe_interval", float),
    "backends_failure_threshold": ("backends", "failure_threshold", int),
    "backends_cooldown": ("backends", "cooldown", float),
    "history_enabled": ("history", "enabled", bool),
    "history_path": ("history", "path", str),
    "history_max_age": ("history", "max_age", float),
    "history_max_size_mb": ("history", "max_size_mb", int),
    "history_queue_size": ("history", "write_queue", int),
    "history_flush_interval": ("history", "flush_interval", float),
    "cluster_redis_url": ("cluster", "redis_url", str),
    "cluster_replica_id": ("cluster", "replica_id", str),
    "cluster_advertise_url": ("cluster", "advertise_url", str),
    "cluster_replica_ttl": ("cluster", "replica_ttl", float),
    "cluster_publish_rate": ("cluster", "publish_rate", float),
    "cluster_command_timeout": ("cluster", "command_timeout", float),
    "cluster_redis_timeout": ("cluster", "redis_timeout", float),
}

_DEFAULTS = resolve_options()


def _values(options: ResolvedOptions) -> dict[str, Any]:
    return {
        name: convert(options.get(plugin, arg)) for name, (plugin, arg, convert) in _SOURCES.items()
    }


_D = _values(_DEFAULTS)


@dataclass(frozen=True)
class GatewayConfig:
    """Every field's default is the descriptor's (see `_SOURCES`)."""

    host: str = _D["host"]
    port: int = _D["port"]
    drain_timeout: float = _D["drain_timeout"]
    state_stream_rate: float = _D["state_stream_rate"]
    state_keepalive: float = _D["state_keepalive"]
    event_log_size: int = _D["event_log_size"]
    api_keys: tuple[str, ...] = _D["api_keys"]
    worker_key: str = _D["worker_key"]
    operator_tokens: tuple[str, ...] = _D["operator_tokens"]
    viewer_tokens: tuple[str, ...] = _D["viewer_tokens"]
    open: bool = _D["open"]
    token_file: str = _D["token_file"]
    allowed_hosts: tuple[str, ...] = _D["allowed_hosts"]
    max_body_bytes: int = _D["max_body_bytes"]
    header_timeout: float = _D["header_timeout"]
    body_timeout: float = _D["body_timeout"]
    max_connections: int = _D["max_connections"]
    scheduler: str = _D["scheduler"]
    queue_size: int = _D["queue_size"]
    queue_timeout: float = _D["queue_timeout"]
    request_timeout: float = _D["request_timeout"]
    max_parallel_embeddings: int = _D["max_parallel_embeddings"]
    embedding_chunk_attempts: int = _D["embedding_chunk_attempts"]
    model_family_matching: bool = _D["model_family_matching"]
    heartbeat_interval: float = _D["heartbeat_interval"]
    heartbeat_expiry: float = _D["heartbeat_expiry"]
    gone_retention: float = _D["gone_retention"]
    max_frame_bytes: int = _D["max_frame_bytes"]
    first_frame_timeout: float = _D["first_frame_timeout"]
    unresponsive_after: int = _D["unresponsive_after"]
    metrics_enabled: bool = _D["metrics_enabled"]
    metrics_per_worker: bool = _D["metrics_per_worker"]
    mcp_max_request_bytes: int = _D["mcp_max_request_bytes"]
    mcp_max_response_bytes: int = _D["mcp_max_response_bytes"]
    mcp_heartbeat_interval: float = _D["mcp_heartbeat_interval"]
    mcp_dead_after: float = _D["mcp_dead_after"]
    mcp_client_concurrency: int = _D["mcp_client_concurrency"]
    mcp_call_timeout: float = _D["mcp_call_timeout"]
    backends_store_path: str = _D["backends_store_path"]
    backends_probe_interval: float = _D["backends_probe_interval"]
    backends_failure_threshold: int = _D["backends_failure_threshold"]
    backends_cooldown: float = _D["backends_cooldown"]
    history_enabled: bool = _D["history_enabled"]
    history_path: str = _D["history_path"]
    history_max_age: float = _D["history_max_age"]
    history_max_size_mb: int = _D["history_max_size_mb"]
    history_queue_size: int = _D["history_queue_size"]
    history_flush_interval: float = _D["history_flush_interval"]
    cluster_redis_url: str = field(default=_D["cluster_redis_url"], repr=False)  # a secret
    cluster_replica_id: str = _D["cluster_replica_id"]
    cluster_advertise_url: str = _D["cluster_advertise_url"]
    cluster_replica_ttl: float = _D["cluster_replica_ttl"]
    cluster_publish_rate: float = _D["cluster_publish_rate"]
    cluster_command_timeout: float = _D["cluster_command_timeout"]
    cluster_redis_timeout: float = _D["cluster_redis_timeout"]
    options: ResolvedOptions = field(default_factory=resolve_options, compare=False, repr=False)

    @classmethod
    def from_options(cls, options: ResolvedOptions) -> GatewayConfig:
        """The typed config. Ranges and choices were checked by `resolve_options` (so
        `gatewaytui options` and `serve` refuse the same values, naming their source)."""
        return cls(**_values(options), options=options)

    @classmethod
    def build(cls, **overrides: object) -> GatewayConfig:
        """Defaults with a few overrides by `plugin.arg` style names (used by tests and demo).

        No ledger file unless a `history__…` override is given: tests and the demo must not
        write `history.sqlite3` into the working directory (`serve` keeps the default, on).
        """
        flags = {key.replace("__", "."): value for key, value in overrides.items()}
        if not any(key.startswith("history.") for key in flags):
            flags["history.enabled"] = "false"
        return cls.from_options(resolve_options(flags=flags))
