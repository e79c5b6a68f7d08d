"""Typed view of the resolved options, read once at start so hot paths never parse."""

from __future__ import annotations

from dataclasses import dataclass, field

from gatewaytui.gateway.options import ResolvedOptions, resolve_options

SCHEDULER_STRATEGIES = ("least-busy", "round-robin", "fill-first")


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    drain_timeout: float = 60.0
    state_stream_rate: float = 4.0
    state_keepalive: float = 5.0
    event_log_size: int = 500
    api_keys: tuple[str, ...] = ()
    worker_key: str = ""
    operator_tokens: tuple[str, ...] = ()
    viewer_tokens: tuple[str, ...] = ()
    scheduler: str = "least-busy"
    queue_size: int = 256
    queue_timeout: float = 30.0
    request_timeout: float = 120.0
    max_parallel_embeddings: int = 4
    embedding_chunk_attempts: int = 3
    model_family_matching: bool = True
    heartbeat_interval: float = 5.0
    heartbeat_expiry: float = 20.0
    gone_retention: float = 300.0
    max_frame_bytes: int = 4 * 1024 * 1024
    metrics_enabled: bool = True
    metrics_per_worker: bool = True
    mcp_max_request_bytes: int = 1024 * 1024
    mcp_max_response_bytes: int = 8 * 1024 * 1024
    mcp_heartbeat_interval: float = 10.0
    mcp_dead_after: float = 30.0
    mcp_client_concurrency: int = 16
    mcp_call_timeout: float = 120.0
    backends_store_path: str = "backends.yaml"
    backends_probe_interval: float = 30.0
    backends_failure_threshold: int = 3
    backends_cooldown: float = 60.0
    options: ResolvedOptions = field(default_factory=resolve_options, compare=False, repr=False)

    @classmethod
    def from_options(cls, options: ResolvedOptions) -> GatewayConfig:
        """Validate cross-option rules and build the typed config."""
        g = options.get
        scheduler = g("llm", "scheduler")
        if scheduler not in SCHEDULER_STRATEGIES:
            raise ValueError(
                f"llm.scheduler={scheduler!r}: expected one of {', '.join(SCHEDULER_STRATEGIES)}"
            )
        rate = float(g("server", "state_stream_rate"))
        if not 0 < rate <= 4:
            raise ValueError(f"server.state_stream_rate={rate}: expected a number in (0, 4]")
        for plugin, arg in (("llm", "queue_size"), ("server", "event_log_size")):
            if g(plugin, arg) < 0:
                raise ValueError(f"{plugin}.{arg}: expected a non-negative integer")
        for plugin, arg in (
            ("llm", "max_parallel_embeddings"),
            ("llm", "embedding_chunk_attempts"),
            ("workers", "max_frame_bytes"),
            ("mcp", "max_request_bytes"),
            ("mcp", "max_response_bytes"),
            ("mcp", "client_concurrency"),
            ("backends", "failure_threshold"),
        ):
            if g(plugin, arg) < 1:
                raise ValueError(f"{plugin}.{arg}: expected a positive integer")
        port = g("server", "port")
        if not 0 <= port <= 65535:
            raise ValueError(f"server.port={port}: expected 0..65535")
        return cls(
            host=g("server", "host"),
            port=port,
            drain_timeout=g("server", "drain_timeout"),
            state_stream_rate=rate,
            state_keepalive=g("server", "state_keepalive"),
            event_log_size=g("server", "event_log_size"),
            api_keys=_split(g("server", "api_keys")),
            worker_key=g("server", "worker_key"),
            operator_tokens=_split(g("server", "operator_tokens")),
            viewer_tokens=_split(g("server", "viewer_tokens")),
            scheduler=scheduler,
            queue_size=g("llm", "queue_size"),
            queue_timeout=g("llm", "queue_timeout"),
            request_timeout=g("llm", "request_timeout"),
            max_parallel_embeddings=g("llm", "max_parallel_embeddings"),
            embedding_chunk_attempts=g("llm", "embedding_chunk_attempts"),
            model_family_matching=g("llm", "model_family_matching"),
            heartbeat_interval=g("workers", "heartbeat_interval"),
            heartbeat_expiry=g("workers", "heartbeat_expiry"),
            gone_retention=g("workers", "gone_retention"),
            max_frame_bytes=g("workers", "max_frame_bytes"),
            metrics_enabled=g("metrics", "enabled"),
            metrics_per_worker=g("metrics", "per_worker"),
            mcp_max_request_bytes=g("mcp", "max_request_bytes"),
            mcp_max_response_bytes=g("mcp", "max_response_bytes"),
            mcp_heartbeat_interval=g("mcp", "heartbeat_interval"),
            mcp_dead_after=g("mcp", "dead_after"),
            mcp_client_concurrency=g("mcp", "client_concurrency"),
            mcp_call_timeout=g("mcp", "call_timeout"),
            backends_store_path=g("backends", "store_path"),
            backends_probe_interval=g("backends", "probe_interval"),
            backends_failure_threshold=g("backends", "failure_threshold"),
            backends_cooldown=g("backends", "cooldown"),
            options=options,
        )

    @classmethod
    def build(cls, **overrides: object) -> GatewayConfig:
        """Defaults with a few overrides by `plugin.arg` style names (used by tests and demo)."""
        flags = {key.replace("__", "."): value for key, value in overrides.items()}
        return cls.from_options(resolve_options(flags=flags))
