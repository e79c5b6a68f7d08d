"""Every gateway option, described once by a PluginDescriptor and resolved from one place.

The descriptors are the single source: they generate the CLI flags of `gatewaytui serve`, the
environment variables, the YAML keys (`plugin_options.<plugin>.<arg>`) and the defaults.
Precedence: flag > env > YAML > default. Nothing else in the gateway reads configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gatewaytui.schema import ArgSpec, ArgState, ArgType, PluginDescriptor, PluginState
from gatewaytui.schema.durations import format_duration, parse_duration
from gatewaytui.schema.state import OptionSource
from gatewaytui.shared.text import did_you_mean


@dataclass(frozen=True)
class Problem:
    """One bad option value or key. `yaml_loc` is its key path in the config file when it
    came from there (so the CLI can add file:line:col); `at_key` points at the key itself
    (an unknown key) rather than its value."""

    message: str
    yaml_loc: tuple[str, ...] | None = None
    at_key: bool = False


class OptionError(ValueError):
    """Bad option values or keys, all of them: `problems` holds one per problem, each message
    naming its source and the expectation; `str()` joins them with "; "."""

    def __init__(self, message: str | list[Problem]) -> None:
        self.problems = [Problem(message)] if isinstance(message, str) else list(message)
        super().__init__("; ".join(p.message for p in self.problems))


def _arg(
    plugin: str,
    arg_id: str,
    arg_type: ArgType,
    default: str,
    description: str,
    *,
    example: str = "",
    secret: bool = False,
    deprecated: bool = False,
    replacement: str = "",
    feeds: str | None = None,
    listed: bool = False,
    named: bool = False,
    choices: tuple[str, ...] = (),
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
) -> ArgSpec:
    """Derive flag, env and YAML names from the plugin and argument id.

    `feeds` names the argument (same plugin) a deprecated one still sets, so old configs
    keep working while they warn. `listed`: a comma-separated list (a string option) that
    YAML may also give as a list.
    """
    dashed = f"{plugin}-{arg_id}".replace("_", "-")
    if feeds is not None:
        FEEDS[(plugin, arg_id)] = feeds
    if listed:
        LISTED.add(f"{plugin}.{arg_id}")
    if named:
        NAMED.add(f"{plugin}.{arg_id}")
    if choices or minimum is not None or maximum is not None or above is not None:
        LIMITS[f"{plugin}.{arg_id}"] = Limit(choices, minimum, maximum, above)
    return ArgSpec(
        id=arg_id,
        flag=f"--{dashed}",
        env=f"{plugin}_{arg_id}".upper(),
        yaml=f"plugin_options.{plugin}.{arg_id}",
        type=arg_type,
        default=default,
        example=example,
        description=description,
        secret=secret,
        deprecated=deprecated,
        replacement=replacement,
        choices=list(choices),
    )


@dataclass(frozen=True)
class Limit:
    """The values an option may take beyond its type: a set of words, or a range
    (`above`: an exclusive lower bound, as for a rate that must be more than 0)."""

    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None

    def problem(self, arg_type: ArgType, value: Any) -> str | None:
        """What is wrong with a parsed value ("expected …"), or None."""
        if self.choices:
            if value not in self.choices:
                return f"expected one of {', '.join(self.choices)}"
            return None
        too_low = (self.minimum is not None and value < self.minimum) or (
            self.above is not None and value <= self.above
        )
        if too_low or (self.maximum is not None and value > self.maximum):
            return f"expected {self.expectation(arg_type)}"
        return None

    def expectation(self, arg_type: ArgType) -> str:
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        noun, article = ("integer", "an") if arg_type == ArgType.INT else ("number", "a")
        if self.maximum is None and self.above is None:
            if self.minimum == 0:
                return f"a non-negative {noun}"
            if self.minimum == 1 and arg_type == ArgType.INT:
                return "a positive integer"
            return f"{article} {noun} of at least {self.minimum:g}"
        low = f"({self.above:g}" if self.above is not None else f"[{self.minimum:g}"
        return f"{article} {noun} in {low}, {self.maximum:g}]"


FEEDS: dict[tuple[str, str], str] = {}
# What the gateway's YAML file may hold at the top level (anything else is a typo to report).
TOP_LEVEL_KEYS = ("plugin_options",)
# `plugin.arg` -> the values it may take beyond its type (checked for every source).
LIMITS: dict[str, Limit] = {}
# `plugin.arg` of the comma-separated list options (YAML may give them as a list).
LISTED: set[str] = set()
# `plugin.arg` of list options whose items may be named: YAML may give a mapping name: value.
NAMED: set[str] = set()

SCHEDULER_STRATEGIES = ("least-busy", "round-robin", "fill-first")

STR, INT, BOOL, NUM, DUR = (
    ArgType.STRING,
    ArgType.INT,
    ArgType.BOOL,
    ArgType.NUMBER,
    ArgType.DURATION,
)

DESCRIPTORS: list[PluginDescriptor] = [
    PluginDescriptor(
        id="server",
        name="Server",
        summary=(
            "Listen address, drain behaviour, the state stream and the secrets of the three "
            "audiences."
        ),
        args=[
            _arg(
                "server",
                "host",
                STR,
                "127.0.0.1",
                "Address to bind (loopback by default).",
                example="0.0.0.0",
            ),
            _arg(
                "server",
                "port",
                INT,
                "8080",
                "TCP port to listen on.",
                example="8080",
                minimum=0,
                maximum=65535,
            ),
            _arg(
                "server",
                "drain_timeout",
                DUR,
                "1m",
                "How long a server drain waits for in-flight jobs before exiting.",
                example="2m",
            ),
            _arg(
                "server",
                "state_stream_rate",
                NUM,
                "4",
                "Maximum deltas per second on the state stream (at most 4).",
                example="2",
                above=0,
                maximum=4,
            ),
            _arg(
                "server",
                "state_keepalive",
                DUR,
                "5s",
                "Keep-alive interval on an idle state stream.",
                example="10s",
            ),
            _arg(
                "server",
                "event_log_size",
                INT,
                "500",
                "Events kept in the bounded event log.",
                minimum=0,
            ),
            _arg(
                "server",
                "api_keys",
                STR,
                "",
                "Comma-separated API keys for OpenAI clients, each `name=key` or a bare key "
                "(named by a short fingerprint); YAML may give a mapping of name to key. "
                "Usage history shows the names, never the keys. Empty means no auth.",
                example="team-search=sk-team-a,team-chat=sk-team-b",
                secret=True,
                listed=True,
                named=True,
            ),
            _arg(
                "server",
                "worker_key",
                STR,
                "",
                "Key workers and MCP relays present when dialling in; empty means no auth.",
                secret=True,
            ),
            _arg(
                "server",
                "operator_tokens",
                STR,
                "",
                "Comma-separated tokens with the operator role (read and act).",
                secret=True,
                listed=True,
            ),
            _arg(
                "server",
                "viewer_tokens",
                STR,
                "",
                "Comma-separated tokens with the viewer role (read only).",
                secret=True,
                listed=True,
            ),
            _arg(
                "server",
                "open",
                BOOL,
                "false",
                "Run the operator API open (no token) when no operator or viewer token is "
                "set. Off by default: the gateway then generates an operator token into "
                "server.token_file at first start.",
            ),
            _arg(
                "server",
                "token_file",
                STR,
                "",
                "File of the generated operator token (mode 0600; reused when present). "
                "Empty: $XDG_STATE_HOME/gatewaytui/operator-token "
                "(~/.local/state/gatewaytui/operator-token).",
                example="/var/lib/gatewaytui/operator-token",
            ),
            _arg(
                "server",
                "allowed_hosts",
                STR,
                "",
                "Extra host names the Host header may carry (DNS-rebinding guard); the bind "
                "address, and on loopback the loopback names, are always allowed; * allows any.",
                example="gateway.internal,10.0.0.5",
                listed=True,
            ),
            _arg(
                "server",
                "max_body_bytes",
                INT,
                "1048576",
                "Largest request body of the admin API (/api); /v1 bodies are bounded by "
                "workers.max_frame_bytes, /mcp by mcp.max_request_bytes (413 above).",
                minimum=1,
            ),
            _arg(
                "server",
                "header_timeout",
                DUR,
                "10s",
                "A connection must send complete request headers within this; else closed.",
                example="5s",
            ),
            _arg(
                "server",
                "body_timeout",
                DUR,
                "1m",
                "A request body must arrive within this after the headers (408 after).",
                example="30s",
            ),
            _arg(
                "server",
                "max_connections",
                INT,
                "1000",
                "Connections open at once (HTTP and WebSocket); one more closes the connection "
                "waiting longest for request headers (or is closed, when all are busy). Never "
                "above the file-descriptor limit minus 448.",
                minimum=1,
            ),
        ],
    ),
    PluginDescriptor(
        id="llm",
        name="LLM Gateway",
        summary="OpenAI-compatible API: scheduling, queueing and partitioned embeddings.",
        args=[
            _arg(
                "llm",
                "scheduler",
                STR,
                "least-busy",
                "Worker pick strategy: least-busy, round-robin or fill-first.",
                example="round-robin",
                choices=SCHEDULER_STRATEGIES,
            ),
            _arg(
                "llm",
                "queue_size",
                INT,
                "256",
                "Requests that may wait for capacity before new ones get 503.",
                example="200",
                minimum=0,
            ),
            _arg(
                "llm",
                "queue_timeout",
                DUR,
                "30s",
                "How long a queued request waits for a worker before 503.",
                example="10s",
            ),
            _arg(
                "llm",
                "request_timeout",
                DUR,
                "10m",
                "Longest a request may take in all: queue wait, retry and the whole answer "
                "(a stream too); past it the job is cancelled on its worker and the client "
                "gets 504 (or an error event on a stream).",
                example="30m",
            ),
            _arg(
                "llm",
                "max_parallel_embeddings",
                INT,
                "4",
                "Chunks of one embeddings request run in parallel at most.",
                example="8",
                minimum=1,
            ),
            _arg(
                "llm",
                "embedding_chunk_attempts",
                INT,
                "3",
                "Tries for one embeddings chunk across different workers.",
                minimum=1,
            ),
            _arg(
                "llm",
                "max_queue",
                INT,
                "",
                "Old name of queue_size.",
                deprecated=True,
                replacement="use llm.queue_size (--llm-queue-size, LLM_QUEUE_SIZE)",
                feeds="queue_size",
            ),
            _arg(
                "llm",
                "model_family_matching",
                BOOL,
                "true",
                "Let llama3:8b-q4 serve llama3:8b when no exact match is free.",
            ),
        ],
    ),
    PluginDescriptor(
        id="workers",
        name="Workers",
        summary="Workers that dial in over WebSocket: heartbeats, expiry and frame limits.",
        args=[
            _arg(
                "workers",
                "heartbeat_interval",
                DUR,
                "5s",
                "How often workers are asked to heartbeat.",
                example="10s",
            ),
            _arg(
                "workers",
                "heartbeat_expiry",
                DUR,
                "20s",
                "Silence after which a worker is evicted and shown as gone.",
                example="30s",
            ),
            _arg(
                "workers",
                "heartbeat_timeout",
                DUR,
                "",
                "Old name of heartbeat_expiry.",
                deprecated=True,
                replacement="use workers.heartbeat_expiry (--workers-heartbeat-expiry)",
                feeds="heartbeat_expiry",
            ),
            _arg(
                "workers",
                "gone_retention",
                DUR,
                "5m",
                "How long a gone worker stays visible before it is removed.",
                example="15m",
            ),
            _arg(
                "workers",
                "max_frame_bytes",
                INT,
                "4194304",
                "Largest frame in either direction: a worker frame over it closes the "
                "connection (1008); a /v1 request whose job frame would exceed it gets 413.",
                minimum=1,
            ),
            _arg(
                "workers",
                "first_frame_timeout",
                DUR,
                "1m",
                "A worker must show life for a job within this: a stream's first chunk, an "
                "embeddings slice's answer, a non-streaming chat's `accepted` frame (from "
                "workers that send them); else the job is retried elsewhere and the miss "
                "counts against the worker.",
                example="30s",
            ),
            _arg(
                "workers",
                "unresponsive_after",
                INT,
                "2",
                "Consecutive missed first frames after which a worker is shown unresponsive "
                "and gets no jobs until it answers one again (or reconnects).",
                minimum=1,
            ),
        ],
    ),
    PluginDescriptor(
        id="mcp",
        name="MCP relay",
        summary="MCP servers behind NAT dial in; MCP clients reach them through the gateway.",
        args=[
            _arg(
                "mcp",
                "max_request_bytes",
                INT,
                "1048576",
                "Largest JSON-RPC request an MCP client may send (413 above).",
                example="262144",
                minimum=1,
            ),
            _arg(
                "mcp",
                "max_response_bytes",
                INT,
                "8388608",
                "Largest reply a relay may return; larger fails the call.",
                example="16777216",
                minimum=1,
            ),
            _arg(
                "mcp",
                "heartbeat_interval",
                DUR,
                "10s",
                "How often relays are asked to heartbeat.",
                example="15s",
            ),
            _arg(
                "mcp",
                "dead_after",
                DUR,
                "30s",
                "Silence after which a relay is dropped and its calls fail.",
                example="1m",
            ),
            _arg(
                "mcp",
                "client_concurrency",
                INT,
                "16",
                "Calls in flight per relay; more get a JSON-RPC error with HTTP 429.",
                example="32",
                minimum=1,
            ),
            _arg(
                "mcp",
                "call_timeout",
                DUR,
                "2m",
                "Longest an MCP call may wait for its relay's reply.",
                example="30s",
            ),
        ],
    ),
    PluginDescriptor(
        id="backends",
        name="Backends",
        summary="Operator-defined OpenAI-compatible endpoints called directly.",
        args=[
            _arg(
                "backends",
                "store_path",
                STR,
                "backends.yaml",
                "YAML file the backends are kept in (written atomically).",
                example="/var/lib/gatewaytui/backends.yaml",
            ),
            _arg(
                "backends",
                "probe_interval",
                DUR,
                "30s",
                "How often every backend is probed.",
                example="1m",
            ),
            _arg(
                "backends",
                "failure_threshold",
                INT,
                "3",
                "Consecutive failed probes before a backend leaves routing.",
                example="5",
                minimum=1,
            ),
            _arg(
                "backends",
                "cooldown",
                DUR,
                "1m",
                "Wait before retrying a backend that left routing.",
                example="5m",
            ),
        ],
    ),
    PluginDescriptor(
        id="history",
        name="History",
        summary=(
            "The usage ledger: one record per finished request in a local SQLite file, "
            "with per-minute rollups (GET /api/history/*)."
        ),
        args=[
            _arg("history", "enabled", BOOL, "true", "Record finished requests in the ledger."),
            _arg(
                "history",
                "path",
                STR,
                "history.sqlite3",
                "SQLite file of the ledger (WAL; created if missing).",
                example="/var/lib/gatewaytui/history.sqlite3",
            ),
            _arg(
                "history",
                "max_age",
                DUR,
                "168h",
                "Records and rollups older than this are deleted.",
                example="720h",
                minimum=60,
            ),
            _arg(
                "history",
                "max_size_mb",
                INT,
                "1024",
                "The oldest records are deleted while the data is larger (0: no limit).",
                example="256",
                minimum=0,
            ),
            _arg(
                "history",
                "write_queue",
                INT,
                "10000",
                "Records waiting for the writer; beyond it they are dropped and counted.",
                minimum=1,
            ),
            _arg(
                "history",
                "flush_interval",
                DUR,
                "500ms",
                "Longest a finished request waits in memory before it is written.",
                example="1s",
                above=0,
                maximum=60,
            ),
        ],
    ),
    PluginDescriptor(
        id="cluster",
        name="Cluster",
        summary=(
            "Several replicas acting as one gateway through Redis (docs/cluster.md); "
            "an empty Redis URL keeps the gateway a single process."
        ),
        args=[
            _arg(
                "cluster",
                "redis_url",
                STR,
                "",
                "Redis URL shared by the replicas of a fleet; empty means a single node. "
                "It may carry a password, so it is a secret.",
                example="redis://:password@10.0.0.5:6379/0",
                secret=True,
            ),
            _arg(
                "cluster",
                "replica_id",
                STR,
                "",
                "This replica's id in the fleet; empty means host name and port.",
                example="gw-eu-1",
            ),
            _arg(
                "cluster",
                "advertise_url",
                STR,
                "",
                "How the other replicas reach this one over HTTP (forwarded requests); empty "
                "means http://<host>:<port> (the host name when bound to all addresses).",
                example="http://10.0.0.7:8080",
            ),
            _arg(
                "cluster",
                "replica_ttl",
                DUR,
                "10s",
                "A replica that has not refreshed its registration for this long is gone.",
                example="15s",
            ),
            _arg(
                "cluster",
                "publish_rate",
                NUM,
                "10",
                "Most times a second a replica publishes what changed on it.",
                example="4",
                above=0,
                maximum=50,
            ),
            _arg(
                "cluster",
                "command_timeout",
                DUR,
                "5s",
                "How long an action forwarded to the owning replica waits for its answer "
                "(then 504).",
                example="10s",
            ),
            _arg(
                "cluster",
                "redis_timeout",
                DUR,
                "1s",
                "Longest a Redis call may take before the replica counts Redis as down "
                "(degraded: it serves its own workers and backends).",
                example="2s",
            ),
        ],
    ),
    PluginDescriptor(
        id="metrics",
        name="Metrics",
        summary="Prometheus exposition at /metrics.",
        args=[
            _arg("metrics", "enabled", BOOL, "true", "Serve GET /metrics."),
            _arg(
                "metrics",
                "per_worker",
                BOOL,
                "true",
                "Export per-worker series (turn off for very large fleets).",
            ),
        ],
    ),
]


# ---- parsing ------------------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

_EXPECTED = {
    ArgType.INT: "an integer",
    ArgType.NUMBER: "a number",
    ArgType.BOOL: "true or false",
    ArgType.DURATION: "a duration like 90s, 5m or 1h30m",
    ArgType.STRING: "a string",
}


class ShapeError(ValueError):
    """A YAML list or mapping where a single value belongs (never turned into text)."""


def _kind(raw: Any) -> str:
    return "a mapping" if isinstance(raw, Mapping) else "a list"


def _scalar(spec: ArgSpec, raw: Any, *, listed: bool = False, named: bool = False) -> Any:
    """A YAML list for a list option becomes its comma-separated text; any other list or
    mapping is refused (turning `[sk-a, sk-b]` into the text "['sk-a', 'sk-b']" would
    silently break auth). A mapping for a named list becomes `name=value,…`."""
    if not isinstance(raw, list | tuple | Mapping | set):
        return raw
    if named and isinstance(raw, Mapping):
        return ",".join(_named_items(raw))
    if not listed or isinstance(raw, Mapping):
        want = _EXPECTED[spec.type] + (" (or a list of them)" if listed else "")
        raise ShapeError(f"expected {want}, not {_kind(raw)}")
    items: list[str] = []
    for number, item in enumerate(raw, 1):
        if isinstance(item, bool) or not isinstance(item, str | int):
            raise ShapeError(f"item {number}: expected a string, not {type(item).__name__}")
        text = str(item).strip()
        if not text or "," in text:
            raise ShapeError(f"item {number}: must be non-empty and hold no comma")
        items.append(text)
    return ",".join(items)


def _named_items(raw: Mapping[Any, Any]) -> list[str]:
    items: list[str] = []
    for number, (name, value) in enumerate(raw.items(), 1):
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ShapeError(f"item {number}: expected a string value, not {type(value).__name__}")
        text, label = str(value).strip(), str(name).strip()
        if not text or not label or "," in text or "," in label or "=" in label:
            raise ShapeError(f"item {number}: name and value must be non-empty, without commas")
        items.append(f"{label}={text}")
    return items


def parse_value(spec: ArgSpec, raw: Any, *, listed: bool = False, named: bool = False) -> Any:
    """Convert a raw value (string from flag/env, or a YAML scalar) to the spec's type.

    `listed`: the option is a comma-separated list, so a YAML list of strings is accepted.
    Raises ShapeError for a list or mapping that cannot stand for the value.
    """
    raw = _scalar(spec, raw, listed=listed, named=named)
    text = str(raw).strip() if not isinstance(raw, bool) else ("true" if raw else "false")
    try:
        match spec.type:
            case ArgType.INT:
                if isinstance(raw, float) and not raw.is_integer():
                    raise ValueError
                return int(text)
            case ArgType.NUMBER:
                return float(text)
            case ArgType.BOOL:
                if text.lower() in _TRUE:
                    return True
                if text.lower() in _FALSE:
                    return False
                raise ValueError
            case ArgType.DURATION:
                return parse_duration(text)
            case _:
                return "" if raw is None else str(raw)
    except ValueError:
        raise ValueError(f"expected {_EXPECTED[spec.type]}") from None


# ---- resolution ---------------------------------------------------------------------------


@dataclass
class ResolvedArg:
    spec: ArgSpec
    value: Any
    source: OptionSource
    label: str = ""  # the flag, env var or YAML path it came from
    raw: Any = None  # as given there (for messages)

    def where(self, key: str) -> str:
        """`--llm-queue-size -1`, `LLM_SCHEDULER=random`, `plugin_options.llm.x=3`, or
        `default of llm.x`; a secret's value is never shown."""
        return describe_source(self.spec, self.source, self.label, self.raw, key)


def describe_source(spec: ArgSpec, source: OptionSource, label: str, raw: Any, key: str) -> str:
    shown = "***" if spec.secret else raw
    if source == "default":
        return f"default of {key}"
    if source == "flag":
        return f"{label} {shown}"
    if source == "env":
        return f"env {label}={shown}"
    return f"{label}={shown}"


@dataclass
class ResolvedOptions:
    """Effective option values with their sources, keyed by plugin then argument id."""

    args: dict[str, dict[str, ResolvedArg]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def get(self, plugin: str, arg_id: str) -> Any:
        return self.args[plugin][arg_id].value

    def describe(self) -> list[PluginState]:
        """Descriptors with effective value and source; secrets only as set/unset."""
        out: list[PluginState] = []
        for descriptor in DESCRIPTORS:
            states: list[ArgState] = []
            for spec in descriptor.args:
                resolved = self.args[descriptor.id][spec.id]
                is_set = resolved.value not in ("", None)
                if spec.secret:
                    shown = None
                elif resolved.value is None:
                    shown = ""
                else:
                    shown = _format_value(spec, resolved.value)
                states.append(
                    ArgState(
                        **spec.model_dump(),
                        value=shown,
                        source=resolved.source,
                        is_set=is_set,
                    )
                )
            out.append(
                PluginState(
                    id=descriptor.id, name=descriptor.name, summary=descriptor.summary, args=states
                )
            )
        return out


def _format_value(spec: ArgSpec, value: Any) -> str:
    if spec.type == ArgType.BOOL:
        return "true" if value else "false"
    if spec.type == ArgType.DURATION:
        return format_duration(float(value))
    if spec.type == ArgType.NUMBER and float(value).is_integer():
        return str(int(value))
    return str(value)


def find_spec(plugin: str, arg_id: str) -> ArgSpec:
    for descriptor in DESCRIPTORS:
        if descriptor.id == plugin:
            for spec in descriptor.args:
                if spec.id == arg_id:
                    return spec
    raise KeyError(f"{plugin}.{arg_id}")


def _winning_source(
    spec: ArgSpec, key: str, flags: Mapping[str, Any], env: Mapping[str, str], plugin_yaml: Any
) -> tuple[OptionSource, str, Any]:
    """Where an option's value comes from: flag > env > YAML > default (source, label, raw)."""
    if key in flags and flags[key] is not None:
        return "flag", spec.flag, flags[key]
    if spec.env in env:
        return "env", spec.env, env[spec.env]
    if isinstance(plugin_yaml, Mapping) and spec.id in plugin_yaml:
        return "yaml", spec.yaml, plugin_yaml[spec.id]
    return "default", "", spec.default


def _resolve_plugin(
    descriptor: PluginDescriptor,
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    plugin_yaml: Any,
    warnings: list[str],
    errors: list[Problem],
) -> dict[str, ResolvedArg]:
    """One plugin's options; bad values go to `errors`, deprecations to `warnings`."""
    bucket: dict[str, ResolvedArg] = {}
    for spec in descriptor.args:
        key = f"{descriptor.id}.{spec.id}"
        source, label, raw = _winning_source(spec, key, flags, env, plugin_yaml)
        if source == "default" and spec.deprecated and spec.default == "":
            bucket[spec.id] = ResolvedArg(spec=spec, value=None, source=source)
            continue
        loc = ("plugin_options", descriptor.id, spec.id) if source == "yaml" else None
        try:
            value = parse_value(spec, raw, listed=key in LISTED, named=key in NAMED)
        except ShapeError as exc:  # not a value to echo: name where it is
            errors.append(Problem(f"{label}: {exc}", loc))
            continue
        except ValueError as exc:
            errors.append(Problem(f"{describe_source(spec, source, label, raw, key)}: {exc}", loc))
            continue
        if spec.deprecated and source != "default":
            warnings.append(
                f"{label} is deprecated" + (f": {spec.replacement}" if spec.replacement else "")
            )
        bucket[spec.id] = ResolvedArg(spec=spec, value=value, source=source, label=label, raw=raw)
    return bucket


def resolve_options(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    yaml_doc: Mapping[str, Any] | None = None,
) -> ResolvedOptions:
    """Resolve every option: flag > env > YAML > default.

    `flags` is keyed by `plugin.arg_id` (only flags the user actually gave); `env` is the
    process environment; `yaml_doc` is the parsed config file (its `plugin_options` section).
    Raises OptionError listing every bad value and unknown key at once.
    """
    flags = flags or {}
    env = env or {}
    errors: list[Problem] = [
        Problem(
            f"{key}: unknown top-level key{did_you_mean(str(key), TOP_LEVEL_KEYS)}"
            f" (known: {', '.join(TOP_LEVEL_KEYS)})",
            (str(key),),
            at_key=True,
        )
        for key in (yaml_doc or {})
        if key not in TOP_LEVEL_KEYS
    ]
    section = (yaml_doc or {}).get("plugin_options") or {}
    if not isinstance(section, Mapping):
        errors.append(
            Problem(
                "plugin_options: expected a mapping of plugin id to options", ("plugin_options",)
            )
        )
        raise OptionError(errors)
    errors.extend(_unknown_yaml_keys(section))
    resolved = ResolvedOptions()
    for descriptor in DESCRIPTORS:
        plugin_yaml = section.get(descriptor.id) or {}
        resolved.args[descriptor.id] = _resolve_plugin(
            descriptor, flags, env, plugin_yaml, resolved.warnings, errors
        )
    if not errors:
        _feed_replacements(resolved)
    errors.extend(_out_of_limits(resolved))  # of the values that parsed: every problem at once
    if errors:
        raise OptionError(errors)
    return resolved


def _out_of_limits(resolved: ResolvedOptions) -> list[Problem]:
    """Range and choice checks, each naming where the value came from."""
    errors: list[Problem] = []
    for key, limit in LIMITS.items():
        plugin, arg_id = key.split(".")
        arg = resolved.args.get(plugin, {}).get(arg_id)
        if arg is None or arg.value is None:  # did not parse, or an unset deprecated option
            continue
        problem = limit.problem(arg.spec.type, arg.value)
        if problem:
            loc = ("plugin_options", plugin, arg_id) if arg.source == "yaml" else None
            errors.append(Problem(f"{arg.where(key)}: {problem}", loc))
    return errors


_RANK = {"default": 0, "yaml": 1, "env": 2, "flag": 3}


def _feed_replacements(resolved: ResolvedOptions) -> None:
    """A deprecated option sets its replacement unless that was given as strongly or more."""
    for (plugin, old_id), new_id in FEEDS.items():
        old = resolved.args[plugin][old_id]
        new = resolved.args[plugin][new_id]
        if old.source == "default" or _RANK[new.source] >= _RANK[old.source]:
            continue
        try:
            value = parse_value(new.spec, old.value)
        except ValueError as exc:
            raise OptionError(f"{old.where(f'{plugin}.{old_id}')}: {exc}") from None
        resolved.args[plugin][new_id] = ResolvedArg(
            spec=new.spec, value=value, source=old.source, label=old.label, raw=old.raw
        )
        resolved.warnings.append(f"{old.label} sets {plugin}.{new_id} (its replacement)")


def _unknown_yaml_keys(section: Mapping[str, Any]) -> list[Problem]:
    known = {d.id: {a.id for a in d.args} for d in DESCRIPTORS}
    problems: list[Problem] = []
    for plugin, values in section.items():
        here = ("plugin_options", str(plugin))
        if plugin not in known:
            problems.append(
                Problem(
                    f"plugin_options.{plugin}: unknown plugin{did_you_mean(plugin, known)}",
                    here,
                    at_key=True,
                )
            )
            continue
        if not isinstance(values, Mapping):
            problems.append(Problem(f"plugin_options.{plugin}: expected a mapping", here))
            continue
        for key in values:
            if key not in known[plugin]:
                hint = did_you_mean(str(key), known[plugin])
                problems.append(
                    Problem(
                        f"plugin_options.{plugin}.{key}: unknown option{hint}",
                        (*here, str(key)),
                        at_key=True,
                    )
                )
    return problems


def allowed_values(plugin: str, spec: ArgSpec) -> str | None:
    """`one of least-busy, round-robin, fill-first` or `a positive integer`, if limited."""
    limit = LIMITS.get(f"{plugin}.{spec.id}")
    return None if limit is None else limit.expectation(spec.type)


_JSON_TYPES: dict[ArgType, dict[str, Any]] = {
    ArgType.INT: {"type": ["integer", "string"]},
    ArgType.NUMBER: {"type": ["number", "string"]},
    ArgType.BOOL: {"type": ["boolean", "string"]},
    ArgType.DURATION: {
        "type": ["string", "number"],
        "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d))+$|^\d+(\.\d+)?$",
    },
    ArgType.STRING: {"type": "string"},
}


def _arg_schema(key: str, spec: ArgSpec) -> dict[str, Any]:
    """One option's JSON Schema: type (or list/name form), limits, default, flags."""
    prop: dict[str, Any] = dict(_JSON_TYPES[spec.type])
    if key in LISTED:
        prop = {
            "type": ["string", "array"],
            "items": {"type": "string", "pattern": "^[^,]+$"},
        }
        if key in NAMED:
            prop["type"] = ["string", "array", "object"]
            prop["additionalProperties"] = {"type": "string", "pattern": "^[^,]+$"}
    prop["description"] = spec.description + (
        f" Deprecated: {spec.replacement}" if spec.deprecated else ""
    )
    limit = LIMITS.get(key)
    if limit is not None and limit.choices:
        prop["enum"] = list(limit.choices)
    elif limit is not None:
        for name, bound in (
            ("minimum", limit.minimum),
            ("maximum", limit.maximum),
            ("exclusiveMinimum", limit.above),
        ):
            if bound is not None:
                prop[name] = int(bound) if float(bound).is_integer() else bound
    if spec.default and not spec.secret:
        prop["default"] = spec.default
    if spec.example:
        prop["examples"] = [spec.example]
    if spec.deprecated:
        prop["deprecated"] = True
    if spec.secret:
        prop["writeOnly"] = True
    return prop


def config_json_schema() -> dict[str, Any]:
    """JSON Schema of the gateway's YAML config, generated from the descriptors."""
    plugins: dict[str, Any] = {}
    for descriptor in DESCRIPTORS:
        properties: dict[str, Any] = {}
        for spec in descriptor.args:
            properties[spec.id] = _arg_schema(f"{descriptor.id}.{spec.id}", spec)
        plugins[descriptor.id] = {
            "type": "object",
            "title": descriptor.name,
            "description": descriptor.summary,
            "properties": properties,
            "additionalProperties": False,
        }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "gatewaytui gateway configuration (gatewaytui serve --config)",
        "type": "object",
        "properties": {
            "plugin_options": {
                "type": "object",
                "properties": plugins,
                "additionalProperties": False,
            }
        },
        "additionalProperties": False,
    }


def options_markdown() -> str:
    """docs/options.md: every option, generated from the descriptors (kept in sync by a test)."""
    lines = [
        "# Gateway options",
        "",
        "Generated from the plugin descriptors by `gatewaytui schema --write docs`; do not edit.",
        "Every option can be given as a flag, an environment variable or a YAML key;",
        "precedence is flag > env > YAML > default. See `gateway-config.schema.json` for the",
        "YAML file's JSON Schema.",
        "",
    ]
    for descriptor in DESCRIPTORS:
        lines += [f"## `{descriptor.id}`: {descriptor.name}", "", descriptor.summary, ""]
        lines += ["| option | type | default | flag / env | description |", "|---|---|---|---|---|"]
        for spec in descriptor.args:
            default = "(secret)" if spec.secret else f"`{spec.default}`" if spec.default else ""
            note = spec.description
            if (allowed := allowed_values(descriptor.id, spec)) is not None:
                note += f" Allowed: {allowed}."
            if spec.example:
                note += f" Example: `{spec.example}`."
            if spec.deprecated:
                note += f" **Deprecated**: {spec.replacement}."
            lines.append(
                f"| `{spec.id}` | {spec.type.value} | {default} | `{spec.flag}` / `{spec.env}` "
                f"| {note} |"
            )
        lines.append("")
    return "\n".join(lines)
