"""MCP relays: connected relays, the calls in flight through them, their counters and metrics.

An MCP server behind NAT is reached through a relay that dials in over `WS /api/mcp/connect`
(see `gateway/routes/mcp.py` for the HTTP and WebSocket shells). Everything here runs on the
gateway's one event loop: a call is opened (limits checked, counted), its frames arrive on its
own queue in order, and it is finished exactly once. When a relay disappears, every call
waiting on it is woken at once with `RelayLost`, so no MCP client hangs on a dead relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as PromCounter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gatewaytui.gateway.clock import iso
from gatewaytui.gateway.config import GatewayConfig
from gatewaytui.gateway.events import EventLog
from gatewaytui.gateway.hub import Collection, StateHub
from gatewaytui.gateway.jobs import ConflictError, UnknownTargetError
from gatewaytui.gateway.sweep import SilentPeerSweep
from gatewaytui.schema.api import ActionResult
from gatewaytui.schema.mcp_protocol import (
    CLOSE_DEAD,
    MCPServerInfo,
    RelayCallFrame,
    RelayCancelFrame,
    RelayErrorFrame,
    RelayEventFrame,
    RelayHeartbeatFrame,
    RelayRegisteredFrame,
    RelayRegisterFrame,
    RelayReplyFrame,
    RelayStatusFrame,
)
from gatewaytui.shared.text import plural

log = logging.getLogger("gatewaytui.gateway.mcp")

# JSON-RPC error codes of gateway-made errors (the `data.code` string says which case it is).
# -32000/-32001 mean what the MCP SDKs use them for: connection closed, request timed out.
RPC_PARSE_ERROR = -32700
RPC_INVALID_REQUEST = -32600
RPC_RELAY_LOST = -32000
RPC_TIMEOUT = -32001
RPC_UNAUTHORIZED = -32003
RPC_NOT_FOUND = -32004
RPC_RESPONSE_TOO_LARGE = -32005
RPC_REQUEST_TOO_LARGE = -32013
RPC_TOO_MANY_CALLS = -32029
RPC_RELAY_ERROR = -32050
RPC_UNAVAILABLE = -32053

# Methods of the MCP specification: only these become metric labels (a client could send any
# string as a method, and every new label value is a new time series).
KNOWN_METHODS = frozenset(
    {
        "initialize", "ping", "server/discover", "tools/list", "tools/call", "resources/list",
        "resources/templates/list", "resources/read", "resources/subscribe",
        "resources/unsubscribe", "prompts/list", "prompts/get", "completion/complete",
        "logging/setLevel", "notifications/initialized", "notifications/cancelled",
        "notifications/progress", "notifications/roots/list_changed", "(response)",
    }
)  # fmt: skip
MAX_METHODS_PER_CLIENT = 64  # distinct method names kept per relay; the rest count as OTHER
OTHER_METHOD = "(other)"
CLOSE_RECONNECT = 1012  # WebSocket "service restart": the relay reconnects (operator's action)
TERMINATE_METHOD = "(terminate)"  # DELETE /mcp/{id}: the client ends its MCP session
COUNTER_ARCHIVE_SIZE = 10_000
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

_call_ids = itertools.count(1)
_PREFIX = os.urandom(3).hex()


def new_call_id() -> str:
    """`mcps-000042-3fa9c1`, in the style of job ids (sequence first, process suffix last)."""
    return f"mcps-{next(_call_ids):06d}-{_PREFIX}"


class MCPError(Exception):
    """A failed MCP call: an HTTP status plus a JSON-RPC error, safe to show the client."""

    def __init__(self, message: str, *, status: int, rpc_code: int, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.rpc_code = rpc_code
        self.code = code

    def body(self, request_id: Any = None) -> dict[str, Any]:
        """The JSON-RPC error response for the request `request_id` (null if unknown)."""
        return {
            "jsonrpc": "2.0",
            "id": request_id,
            "error": {"code": self.rpc_code, "message": self.message, "data": {"code": self.code}},
        }


class DuplicateRelayError(Exception):
    """A relay registered with the id of one that is still connected."""


@dataclass(frozen=True)
class RelayLost:
    """Put on a call's queue when its relay disappears."""

    reason: str


class RelayConnection(Protocol):
    """What the gateway needs of a relay's live connection."""

    async def send(self, frame: dict[str, Any]) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


@dataclass
class RelayCounters:
    """Survive a reconnect of the same relay id (archived while it is away)."""

    calls: int = 0
    errors: int = 0
    rejected: int = 0
    functions: dict[str, int] = field(default_factory=dict)
    errors_by_method: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None
    last_error_at: float | None = None
    reconnects: int = 0

    def method_key(self, method: str) -> str:
        """The method itself, unless this relay has already seen too many distinct ones."""
        if method in self.functions or len(self.functions) < MAX_METHODS_PER_CLIENT:
            return method
        return OTHER_METHOD


class RelayRecord:
    """One relay. `status` is derived, never stored, so it cannot go stale."""

    def __init__(
        self, frame: RelayRegisterFrame, conn: RelayConnection | None, remote: str | None
    ) -> None:
        self.id = frame.id
        self.counters = RelayCounters()
        self.calls: dict[str, MCPCall] = {}
        self.apply_register(frame, conn, remote)

    def apply_register(
        self, frame: RelayRegisterFrame, conn: RelayConnection | None, remote: str | None
    ) -> None:
        now = time.time()
        self.name = frame.name or frame.id
        self.transport = frame.transport
        self.version = frame.version
        self.token_required = frame.token_required
        self.ready = frame.ready
        self.reason = frame.reason
        self.server: MCPServerInfo | None = frame.server
        self.conn = conn
        self.remote_addr = remote
        self.connected_at = now
        self.last_heartbeat = now
        self.gone_at: float | None = None

    @property
    def status(self) -> str:
        if self.gone_at is not None:
            return "gone"
        if not self.ready:
            return "not_ready"
        return "working" if self.calls else "idle"

    def to_dict(self, max_concurrency: int) -> dict[str, Any]:
        c = self.counters
        server = self.server or MCPServerInfo()
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "inflight": len(self.calls),
            "functions": dict(c.functions),
            "connected_at": iso(self.connected_at),
            "server_name": server.name,
            "server_version": server.version,
            "capabilities": list(server.capabilities),
            "calls": c.calls,
            "errors": c.errors,
            "errors_by_method": dict(c.errors_by_method),
            "last_error": c.last_error,
            "server_title": server.title,
            "protocol_version": server.protocol_version,
            "status_reason": None if self.ready or self.gone_at is not None else self.reason,
            "transport": self.transport,
            "token_required": self.token_required,
            "max_concurrency": max_concurrency,
            "remote_addr": self.remote_addr,
            "last_heartbeat": iso(self.last_heartbeat),
            "gone_at": iso(self.gone_at),
            "last_error_at": iso(c.last_error_at),
            "rejected": c.rejected,
            "reconnects": c.reconnects,
        }


class MCPCall:
    """One MCP client request on its way through a relay (a "session" in state)."""

    __slots__ = (
        "bytes_out",
        "client",
        "counted",
        "done",
        "id",
        "key",
        "method",
        "queue",
        "relay",
        "request_id",
        "started",
        "started_at",
        "stream",
        "target",
    )

    def __init__(
        self,
        relay: RelayRecord,
        method: str,
        *,
        request_id: Any = None,
        target: str | None = None,
        client: str | None = None,
        counted: bool = True,
        call_id: str | None = None,
        started_at: float | None = None,
    ) -> None:
        self.id = call_id or new_call_id()
        self.relay = relay
        self.method = method
        self.request_id = request_id
        self.target = target
        self.client = client
        self.counted = counted
        self.started_at = time.time() if started_at is None else started_at
        self.started = time.monotonic()
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.stream = False
        self.bytes_out = 0
        self.done = False
        self.key: str | None = None  # the API key's name, for the usage ledger

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        return {
            "id": self.id,
            "client_id": self.relay.id,
            "method": self.method,
            "started_at": iso(self.started_at),
            "duration_ms": max(int((now - self.started_at) * 1000), 0),
            "target": self.target,
            "stream": self.stream,
            "client": self.client,
        }


def call_target(message: dict[str, Any]) -> str | None:
    """What a request is about: the tool or prompt name, or the resource URI."""
    params = message.get("params")
    if not isinstance(params, dict):
        return None
    for key in ("name", "uri"):
        value = params.get(key)
        if isinstance(value, str) and value:
            return value[:200]
    return None


def metric_method(method: str) -> str:
    return method if method in KNOWN_METHODS else "other"


class _LiveCollector(Collector):
    def __init__(self, read: Callable[[], list[RelayRecord]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Any]:
        relays = self._read()
        inflight = GaugeMetricFamily(
            "gatewaytui_mcp_inflight_calls", "MCP calls in flight per relay.", labels=["client"]
        )
        by_status: Counter[str] = Counter()
        for relay in relays:
            by_status[relay.status] += 1
            if relay.gone_at is None:
                inflight.add_metric([relay.id], len(relay.calls))
        yield inflight
        clients = GaugeMetricFamily(
            "gatewaytui_mcp_clients", "MCP relays by status.", labels=["status"]
        )
        for status in ("idle", "working", "not_ready", "gone"):
            clients.add_metric([status], by_status.get(status, 0))
        yield clients


class MCPMetrics:
    """MCP series, registered in the gateway's own registry."""

    def __init__(self, registry: CollectorRegistry, read: Callable[[], list[RelayRecord]]) -> None:
        self.calls = PromCounter(
            "gatewaytui_mcp_calls",
            "MCP calls per relay and method (outcome: success, error, rejected, cancelled).",
            ["client", "method", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "gatewaytui_mcp_call_duration_seconds",
            "Time from an MCP client's request to the end of its answer.",
            ["method"],
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.relay_events = PromCounter(
            "gatewaytui_mcp_relay_events",
            "MCP relay connects, disconnects, evictions, refusals.",
            ["event"],
            registry=registry,
        )
        registry.register(_LiveCollector(read))


class MCPRelays:
    """The relays and their calls. The HTTP layer opens, drives and finishes calls."""

    def __init__(
        self,
        config: GatewayConfig,
        hub: StateHub,
        events: EventLog,
        registry: CollectorRegistry,
        is_draining: Callable[[], bool] = lambda: False,
    ) -> None:
        self.config = config
        self.hub = hub
        self.events = events
        self.is_draining = is_draining
        self.relays: dict[str, RelayRecord] = {}
        self.calls: dict[str, MCPCall] = {}
        self._archive: OrderedDict[str, RelayCounters] = OrderedDict()
        self.metrics = MCPMetrics(registry, lambda: list(self.relays.values()))
        # (call, error, cancelled) once per ended call: the usage ledger (gateway/history)
        self.on_call_end: Callable[[MCPCall, str | None, bool], None] | None = None
        hub.add_collection("mcp_clients", Collection(self._client_item, self._all_clients))
        hub.add_collection("mcp_sessions", Collection(self._session_item, self._all_sessions))

    # ---- state items ----------------------------------------------------------------------

    def _client_item(self, relay_id: str) -> dict[str, Any] | None:
        relay = self.relays.get(relay_id)
        return relay.to_dict(self.config.mcp_client_concurrency) if relay is not None else None

    def _all_clients(self) -> list[dict[str, Any]]:
        limit = self.config.mcp_client_concurrency
        return [relay.to_dict(limit) for relay in self.relays.values()]

    def _session_item(self, call_id: str) -> dict[str, Any] | None:
        call = self.calls.get(call_id)
        return call.to_dict() if call is not None else None

    def _all_sessions(self) -> list[dict[str, Any]]:
        now = time.time()
        return [call.to_dict(now) for call in self.calls.values()]

    def _touch(self, relay: RelayRecord) -> None:
        self.hub.touch("mcp_clients", relay.id)

    # ---- relays ---------------------------------------------------------------------------

    def register(
        self, frame: RelayRegisterFrame, conn: RelayConnection | None, remote: str | None
    ) -> tuple[RelayRecord, dict[str, Any]]:
        """Admit a relay; raises DuplicateRelayError for a live id. Returns the reply frame."""
        existing = self.relays.get(frame.id)
        if existing is not None and existing.gone_at is None:
            self.metrics.relay_events.labels("refused").inc()
            where = f" from {existing.remote_addr}" if existing.remote_addr else ""
            message = f"mcp relay id {frame.id!r} is already connected{where}"
            self.events.add("mcp_refuse", f"{message}; refused {remote or '?'}", level="warning")
            raise DuplicateRelayError(message)
        if existing is not None:
            existing.apply_register(frame, conn, remote)
            existing.counters.reconnects += 1
            relay, reconnected = existing, True
        else:
            relay = RelayRecord(frame, conn, remote)
            archived = self._archive.pop(frame.id, None)
            if archived is not None:
                relay.counters = archived
                archived.reconnects += 1
            reconnected = archived is not None
            self.relays[relay.id] = relay
        self._touch(relay)
        self.metrics.relay_events.labels("connect").inc()
        server = relay.server
        about = f"{server.name} {server.version or ''}".strip() if server and server.name else ""
        self.events.add(
            "mcp_connect",
            f"mcp relay {relay.id} {'reconnected' if reconnected else 'connected'} from "
            f"{remote or '?'} ({relay.transport}{', ' + about if about else ''}"
            f"{'' if relay.ready else ', not ready: ' + (relay.reason or '?')})",
        )
        reply = RelayRegisteredFrame(
            client_id=relay.id,
            heartbeat_interval_s=self.config.mcp_heartbeat_interval,
            dead_after_s=self.config.mcp_dead_after,
            max_request_bytes=self.config.mcp_max_request_bytes,
            max_response_bytes=self.config.mcp_max_response_bytes,
        )
        return relay, reply.model_dump()

    def relay_frame(self, relay: RelayRecord, frame: Any, size: int = 0) -> None:
        """Apply one parsed frame from a registered relay (`size`: its length in bytes)."""
        relay.last_heartbeat = time.time()
        if isinstance(frame, RelayHeartbeatFrame):
            self._touch(relay)
            return
        if isinstance(frame, RelayStatusFrame):
            self._apply_status(relay, frame)
            return
        if isinstance(frame, RelayRegisterFrame):
            raise ValueError("register may only be sent once per connection")
        call = relay.calls.get(frame.call_id)
        if call is None:
            log.debug("frame for unknown call %s from relay %s ignored", frame.call_id, relay.id)
            return
        if isinstance(frame, RelayReplyFrame | RelayEventFrame):
            call.bytes_out += size
            limit = self.config.mcp_max_response_bytes
            if call.bytes_out > limit:
                self.cancel_on_relay(call, "response too large")
                call.queue.put_nowait(
                    MCPError(
                        f"the MCP server's answer exceeds mcp.max_response_bytes ({limit})",
                        status=502,
                        rpc_code=RPC_RESPONSE_TOO_LARGE,
                        code="response_too_large",
                    )
                )
                return
        call.queue.put_nowait(frame)

    def _apply_status(self, relay: RelayRecord, frame: RelayStatusFrame) -> None:
        was_ready = relay.ready
        relay.ready = frame.ready
        relay.reason = frame.reason
        if frame.server is not None:
            relay.server = frame.server
        self._touch(relay)
        if was_ready != frame.ready:
            server = relay.server
            why = f": {frame.reason}" if frame.reason else ""
            if frame.ready and server is not None and server.name:
                why = f" ({server.name} {server.version or ''})".replace(" )", ")")
            self.events.add(
                "mcp_status",
                f"mcp relay {relay.id} is {'ready' if frame.ready else 'not ready'}{why}",
                level="info" if frame.ready else "warning",
            )

    def relay_disconnected(
        self, relay: RelayRecord, reason: str, *, evicted: bool = False, clean: bool = False
    ) -> None:
        """The relay is gone: every call waiting on it fails now; the record stays visible."""
        if relay.gone_at is not None:
            return
        relay.gone_at = time.time()
        relay.conn = None
        for call in list(relay.calls.values()):
            call.queue.put_nowait(RelayLost(reason))
        self._touch(relay)
        kind = "evict" if evicted else "disconnect"
        self.metrics.relay_events.labels(kind).inc()
        pending = f", {plural(len(relay.calls), 'call')} failed" if relay.calls else ""
        self.events.add(
            f"mcp_{kind}",
            f"mcp relay {relay.id} {'evicted' if evicted else 'disconnected'}: {reason}{pending}",
            level="info" if clean and not evicted else "warning",
        )

    async def disconnect(self, relay_id: str) -> ActionResult:
        """An operator closes a relay's connection (1012: its relay reconnects by itself,
        through a load balancer perhaps to another replica); calls in flight on it fail."""
        relay = self.relays.get(relay_id)
        if relay is None:
            raise UnknownTargetError(f"no mcp client with id {relay_id!r}")
        conn = relay.conn
        if relay.gone_at is not None or conn is None:
            raise ConflictError(f"mcp client {relay_id!r} is not connected")
        failed = len(relay.calls)
        self.relay_disconnected(relay, "disconnected by an operator", clean=True)
        await conn.close(CLOSE_RECONNECT, "disconnected by an operator")
        return ActionResult(
            message=f"mcp client {relay_id} disconnected"
            + (f" ({plural(failed, 'call')} failed)" if failed else "")
            + "; its relay reconnects by itself",
            target=relay_id,
            details={"failed_calls": failed},
        )

    def sweeper(self) -> SilentPeerSweep:
        """Drop relays silent for longer than `mcp.dead_after`; forget long-gone ones."""
        dead_after = self.config.mcp_dead_after

        def evict(relay: RelayRecord, silence: float) -> None:
            reason = f"no frame for {silence:.0f}s (dead after {dead_after:g}s)"
            self.relay_disconnected(relay, reason, evicted=True)

        def forget(relay: RelayRecord) -> None:
            del self.relays[relay.id]
            self._archive[relay.id] = relay.counters
            self._archive.move_to_end(relay.id)
            while len(self._archive) > COUNTER_ARCHIVE_SIZE:
                self._archive.popitem(last=False)
            self._touch(relay)

        return SilentPeerSweep(
            noun="mcp relay",
            peers=lambda: self.relays.values(),
            expiry=dead_after,
            retention=self.config.gone_retention,
            interval=max(min(self.config.mcp_heartbeat_interval / 2, 1.0), 0.05),
            evict=evict,
            forget=forget,
            close_code=CLOSE_DEAD,
        )

    # ---- calls ----------------------------------------------------------------------------

    def open_call(
        self,
        client_id: str,
        method: str,
        *,
        request_id: Any = None,
        target: str | None = None,
        client: str | None = None,
        token: str | None = None,
        counted: bool = True,
    ) -> MCPCall:
        """Check the limits and start tracking a call; raises MCPError when it may not run."""
        relay = self.relays.get(client_id)
        if relay is None:
            raise MCPError(
                f"no MCP client with id {client_id!r} is connected to this gateway",
                status=404,
                rpc_code=RPC_NOT_FOUND,
                code="mcp_client_not_found",
            )
        refusal = self._refusal(relay, client_id, method, token)
        call = MCPCall(
            relay, method, request_id=request_id, target=target, client=client, counted=counted
        )
        if counted:
            c = relay.counters
            key = c.method_key(method)
            c.calls += 1
            c.functions[key] = c.functions.get(key, 0) + 1
        if refusal is not None:
            self._count_error(call, refusal.message, metric=refusal.status != 429)
            self._touch(relay)
            raise refusal
        relay.calls[call.id] = call
        self.calls[call.id] = call
        self._touch(relay)
        self.hub.touch("mcp_sessions", call.id)
        return call

    def _refusal(
        self, relay: RelayRecord, client_id: str, method: str, token: str | None
    ) -> MCPError | None:
        """Why a call to this relay may not run now (gone, draining, not ready, no token, at
        its concurrency limit), or None."""
        limit = self.config.mcp_client_concurrency
        if relay.gone_at is not None:
            return MCPError(
                f"MCP relay {client_id!r} is disconnected; retry when it is back",
                status=503,
                rpc_code=RPC_UNAVAILABLE,
                code="relay_unavailable",
            )
        if self.is_draining():
            return MCPError(
                "the gateway is draining; not accepting new calls",
                status=503,
                rpc_code=RPC_UNAVAILABLE,
                code="server_draining",
            )
        if not relay.ready:
            return MCPError(
                f"MCP relay {client_id!r} cannot reach its server: {relay.reason or 'not ready'}",
                status=503,
                rpc_code=RPC_UNAVAILABLE,
                code="relay_not_ready",
            )
        if relay.token_required and not token:
            return MCPError(
                f"MCP relay {client_id!r} requires its own token (send it in X-Relay-Token)",
                status=401,
                rpc_code=RPC_UNAUTHORIZED,
                code="relay_token_required",
            )
        if len(relay.calls) >= limit:
            relay.counters.rejected += 1
            self.metrics.calls.labels(relay.id, metric_method(method), "rejected").inc()
            return MCPError(
                f"MCP client {client_id!r} has {plural(limit, 'call')} in flight "
                f"(mcp.client_concurrency); retry later",
                status=429,
                rpc_code=RPC_TOO_MANY_CALLS,
                code="too_many_calls",
            )
        return None

    async def send_call(self, call: MCPCall, frame: RelayCallFrame) -> None:
        """Hand the call to its relay; a failed send shows up as RelayLost on the queue."""
        conn = call.relay.conn
        if conn is None:
            call.queue.put_nowait(RelayLost("relay connection closed"))
            return
        try:
            await conn.send(frame.model_dump())
        except Exception as exc:  # the reader side will notice the broken connection too
            call.queue.put_nowait(RelayLost(f"send failed: {exc}"))

    async def next_frame(self, call: MCPCall, timeout: float | None = None) -> Any:
        """The next reply/event/end frame of a call; raises MCPError for every failure."""
        timeout = self.config.mcp_call_timeout if timeout is None else timeout
        try:
            item = await asyncio.wait_for(call.queue.get(), timeout=timeout)
        except TimeoutError:
            self.cancel_on_relay(call, "call timeout")
            raise MCPError(
                f"MCP relay {call.relay.id!r} did not answer within {timeout:g}s "
                "(mcp.call_timeout)",
                status=504,
                rpc_code=RPC_TIMEOUT,
                code="call_timeout",
            ) from None
        if isinstance(item, RelayLost):
            raise MCPError(
                f"MCP relay {call.relay.id!r} went away during the call: {item.reason}",
                status=502,
                rpc_code=RPC_RELAY_LOST,
                code="relay_lost",
            )
        if isinstance(item, MCPError):
            raise item
        if isinstance(item, RelayErrorFrame):
            raise MCPError(
                item.message,
                status=item.status,
                rpc_code=RPC_RELAY_ERROR,
                code=item.code or "relay",
            )
        return item

    def cancel_on_relay(self, call: MCPCall, reason: str) -> None:
        conn = call.relay.conn
        if conn is None or call.done:
            return
        frame = RelayCancelFrame(call_id=call.id, reason=reason).model_dump()

        async def send() -> None:
            with contextlib.suppress(Exception):
                await conn.send(frame)

        asyncio.get_running_loop().create_task(send())

    def finish_call(self, call: MCPCall, error: str | None = None) -> None:
        """The call is over (answered or failed); count it once and stop tracking it."""
        if call.done:
            return
        self._forget(call)
        if self.on_call_end is not None:
            self.on_call_end(call, error, False)
        if error is not None:
            self._count_error(call, error)
        elif call.counted:
            self.metrics.calls.labels(call.relay.id, metric_method(call.method), "success").inc()
        if call.counted:
            seconds = time.monotonic() - call.started
            self.metrics.duration.labels(metric_method(call.method)).observe(seconds)

    def abandon(self, call: MCPCall, reason: str = "client went away") -> None:
        """The MCP client left before the answer: stop the relay, count no error."""
        if call.done:
            return
        self.cancel_on_relay(call, reason)
        self._forget(call)
        if self.on_call_end is not None:
            self.on_call_end(call, reason, True)
        if call.counted:
            self.metrics.calls.labels(call.relay.id, metric_method(call.method), "cancelled").inc()

    def set_streaming(self, call: MCPCall) -> None:
        call.stream = True
        self.hub.touch("mcp_sessions", call.id)

    def _forget(self, call: MCPCall) -> None:
        call.done = True
        call.relay.calls.pop(call.id, None)
        self.calls.pop(call.id, None)
        self._touch(call.relay)
        self.hub.touch("mcp_sessions", call.id)

    def _count_error(self, call: MCPCall, error: str, *, metric: bool = True) -> None:
        if not call.counted:  # a session end (DELETE) is transport housekeeping, not a call
            return
        relay = call.relay
        c = relay.counters
        key = c.method_key(call.method)
        c.errors += 1
        c.errors_by_method[key] = c.errors_by_method.get(key, 0) + 1
        if metric:
            self.metrics.calls.labels(relay.id, metric_method(call.method), "error").inc()
        about = f" {call.target}" if call.target else ""
        c.last_error = f"{call.method}{about}: {error}"[:1024]
        c.last_error_at = time.time()
        self._touch(relay)
