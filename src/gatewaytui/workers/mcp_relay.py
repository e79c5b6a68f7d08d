"""The MCP relay: dials the gateway (`WS /api/mcp/connect`) and carries MCP calls to a local
MCP server, so a server behind NAT is reachable at the gateway's `POST /mcp/{id}`.

`MCPRelayClient` owns the connection and its reconnect loop (capped exponential backoff with
full jitter, like the workers); an `Upstream` (stdio command or Streamable HTTP URL) answers
the calls. Each call runs as its own task, so a slow tool never holds up the others, and a
`cancel` from the gateway stops exactly that call.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import random
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from gatewaytui import __version__
from gatewaytui.schema.mcp_protocol import (
    CLOSE_DEAD,
    CLOSE_DUPLICATE_ID,
    CLOSE_POLICY_VIOLATION,
    GATEWAY_RELAY_FRAME_ADAPTER,
    RELAY_ID_PATTERN,
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
from gatewaytui.workers.dial_out import (
    EXIT_CONFIG,
    DialOutClient,
    DialOutSettings,
    SessionEnd,
    drain_on_signals,
    invalid_frame,
    run_until_stopped,
    wire_logger,
)
from gatewaytui.workers.mcp_upstream import (
    DEFAULT_PROTOCOL_VERSION,
    HttpUpstream,
    StdioUpstream,
    Upstream,
    UpstreamError,
)
from gatewaytui.workers.settings import (
    DEFAULT_GATEWAY_URL,
    BackoffSettings,
    gateway_ws_url,
    redact_url,
)

log = logging.getLogger("gatewaytui.workers.mcp_relay")

# How long after announcing a drain the relay still serves calls already on their way.
DRAIN_GRACE_S = 0.5
# websockets logs handshake headers at DEBUG: a logger of our own masks the worker key there.
_wire_log = wire_logger("gatewaytui.workers.mcp_wire")
# Secrets of the relay itself that the MCP server it starts must not inherit.
RELAY_SECRET_ENV = ("GATEWAYTUI_WORKER_KEY", "GATEWAYTUI_MCP_RELAY_TOKEN")

MCP_CONNECT_PATH = "/api/mcp/connect"
DRAINING_REASON = "relay draining"


class MCPRelaySettings(BaseModel):
    """Everything a relay needs. Secrets (`key`, `token`, `upstream_headers`) never show in
    repr or logs."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    gateway_url: str = Field(default=DEFAULT_GATEWAY_URL, description="ws(s)/http(s) address.")
    key: str | None = Field(default=None, repr=False, description="Worker key (Bearer).")
    id: str = Field(min_length=1, max_length=128, pattern=RELAY_ID_PATTERN)
    name: str | None = Field(default=None, max_length=256)
    command: list[str] | None = Field(default=None, description="MCP server over stdio.")
    url: str | None = Field(default=None, description="MCP server's Streamable HTTP URL.")
    upstream_headers: dict[str, str] = Field(default_factory=dict, repr=False)
    token: str | None = Field(
        default=None, repr=False, description="Token MCP clients must send in X-Relay-Token."
    )
    protocol_version: str = DEFAULT_PROTOCOL_VERSION
    backoff: BackoffSettings = Field(default_factory=BackoffSettings)
    open_timeout_s: float = Field(default=10.0, gt=0)
    register_timeout_s: float = Field(default=10.0, gt=0)
    init_timeout_s: float = Field(default=30.0, gt=0)
    upstream_timeout_s: float = Field(default=300.0, gt=0)
    drain_timeout_s: float = Field(default=30.0, ge=0)
    max_message_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"the MCP server url must be http(s)://host[:port]/path, got {value!r}"
            )
        return value.strip()

    @model_validator(mode="after")
    def _one_upstream(self) -> MCPRelaySettings:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one MCP server: a command (stdio) or a url (http)")
        if self.command is not None and not self.command:
            raise ValueError("the MCP server command is empty")
        return self


def build_upstream(settings: MCPRelaySettings, *, secret_env: Sequence[str] = ()) -> Upstream:
    """The bridge `settings` asks for: a stdio command or a Streamable HTTP URL.

    A stdio server inherits the relay's environment minus its secrets (`RELAY_SECRET_ENV`
    and the names in `secret_env`): a third-party server has no business with the worker key.
    """
    if settings.command is not None:
        hidden = {*RELAY_SECRET_ENV, *secret_env}
        env = {name: value for name, value in os.environ.items() if name not in hidden}
        return StdioUpstream(
            settings.command,
            env=env,
            protocol_version=settings.protocol_version,
            init_timeout_s=settings.init_timeout_s,
            max_message_bytes=settings.max_message_bytes,
            restart_base_s=settings.backoff.base_s,
            restart_cap_s=settings.backoff.cap_s,
        )
    assert settings.url is not None
    return HttpUpstream(
        settings.url,
        headers=settings.upstream_headers,
        protocol_version=settings.protocol_version,
        timeout_s=settings.upstream_timeout_s,
        retry_base_s=settings.backoff.base_s,
        retry_cap_s=settings.backoff.cap_s,
        max_message_bytes=settings.max_message_bytes,
    )


class MCPRelayClient(DialOutClient[RelayRegisteredFrame]):
    """Dials the gateway and serves calls with `upstream` until stopped.

    Observable for tests and the CLI: `connected` (set while registered), `registered`,
    `idle` (set when no call is in flight), `stopped`, `sessions`, `calls_served`.
    """

    kind = "mcp relay"
    close_hints = {
        CLOSE_DUPLICATE_ID: "another relay with this id is connected; give each relay a unique id",
        CLOSE_POLICY_VIOLATION: "the gateway rejected a frame (policy violation)",
        CLOSE_DEAD: "the gateway dropped this relay (missed heartbeats?)",
        1001: "the gateway is shutting down",
    }

    def __init__(
        self, settings: MCPRelaySettings, upstream: Upstream, *, rng: random.Random | None = None
    ) -> None:
        dial = DialOutSettings(
            url=gateway_ws_url(settings.gateway_url, MCP_CONNECT_PATH),
            key=settings.key,
            backoff=settings.backoff,
            user_agent="gatewaytui-mcp-relay",
            open_timeout_s=settings.open_timeout_s,
            register_timeout_s=settings.register_timeout_s,
            max_frame_bytes=max(settings.max_message_bytes, 1 << 20) * 2,
        )
        super().__init__(
            settings.id,
            dial,
            answers=GATEWAY_RELAY_FRAME_ADAPTER,
            registered_type=RelayRegisteredFrame,
            logger=log,
            wire_log=_wire_log,
            rng=rng,
        )
        self.settings = settings
        self.upstream = upstream
        self.calls_served = 0
        self.calls_failed = 0
        self._drain_started = 0.0

    # ---- control --------------------------------------------------------------------------

    async def drain(self, timeout: float | None = None) -> None:
        """Refuse new calls, let the in-flight ones finish (up to `timeout`), close 1000."""
        self._draining = True
        self._drain_started = asyncio.get_running_loop().time()
        await self._announce_status()  # the gateway stops sending calls
        limit = self.settings.drain_timeout_s if timeout is None else timeout
        # Calls the gateway sent before it read our draining status are still on the wire;
        # they are served, not refused, if they arrive within the grace period.
        await asyncio.sleep(DRAIN_GRACE_S)
        calls = list(self._tasks.values())
        if calls:
            log.info("mcp relay %s: draining %s", self.id, plural(len(calls), "call"))
            _, pending = await asyncio.wait(calls, timeout=limit)
            await self._cancel_tasks(pending)
        await self._shutdown(1000, "relay drained")

    def _drain_grace_over(self) -> bool:
        return asyncio.get_running_loop().time() - self._drain_started > DRAIN_GRACE_S

    # ---- the frames this client sends -----------------------------------------------------

    def _subscribe(self, changed: Callable[[], None]) -> Callable[[], None]:
        return self.upstream.subscribe(changed)

    def _heartbeat_frame(self) -> RelayHeartbeatFrame:
        return RelayHeartbeatFrame()

    def _readiness(self) -> tuple[bool, str | None]:
        if self._draining:
            return False, DRAINING_REASON
        up = self.upstream
        return up.ready, (up.reason or "")[:1024] or None

    def _status_frame(self) -> RelayStatusFrame:
        ready, reason = self._readiness()
        return RelayStatusFrame(ready=ready, reason=reason, server=self.upstream.server)

    def _register_frame(self) -> RelayRegisterFrame:
        ready, reason = self._readiness()
        return RelayRegisterFrame(
            id=self.id,
            name=self.settings.name or self.id,
            transport="stdio" if self.upstream.transport == "stdio" else "http",
            version=__version__,
            token_required=bool(self.settings.token),
            ready=ready,
            reason=reason,
            server=self.upstream.server,
        )

    def _on_registered(self, answer: RelayRegisteredFrame) -> None:
        log.info(
            "mcp relay %s: registered with %s as %s (%s)",
            self.id,
            redact_url(self.url),
            answer.client_id,
            self.upstream.describe()
            if self.upstream.ready
            else f"not ready: {self.upstream.reason}",
        )

    # ---- frames from the gateway ------------------------------------------------------------

    async def _dispatch(
        self, ws: ClientConnection, raw: str | bytes, registered: RelayRegisteredFrame
    ) -> None:
        try:
            frame = GATEWAY_RELAY_FRAME_ADAPTER.validate_json(raw)
        except ValidationError as exc:  # never `exc` itself: it would echo the frame's token
            log.warning(
                "mcp relay %s: ignoring a frame that does not parse: %s",
                self.id,
                invalid_frame(exc),
            )
            return
        if isinstance(frame, RelayCallFrame):
            if frame.call_id in self._tasks:
                log.warning("mcp relay %s: ignoring duplicate call id %s", self.id, frame.call_id)
                return
            self._track(frame.call_id, self._run_call(ws, frame, registered))
        elif isinstance(frame, RelayCancelFrame):
            task = self._tasks.get(frame.call_id)
            if task is not None:
                log.info(
                    "mcp relay %s: call %s cancelled: %s", self.id, frame.call_id, frame.reason
                )
                task.cancel()

    def _check_token(self, call: RelayCallFrame) -> None:
        wanted = self.settings.token
        if not wanted:
            return
        if not call.token:
            raise UpstreamError(
                401, "this MCP relay requires its token in X-Relay-Token", "relay_token_required"
            )
        if not hmac.compare_digest(call.token.encode(), wanted.encode()):
            raise UpstreamError(
                403, "the MCP relay refused the token in X-Relay-Token", "relay_token_invalid"
            )

    async def _run_call(
        self, ws: ClientConnection, call: RelayCallFrame, registered: RelayRegisteredFrame
    ) -> None:
        limit = registered.max_response_bytes
        sent = 0

        async def emit(frame: BaseModel) -> None:
            nonlocal sent
            text = frame.model_dump_json()
            if isinstance(frame, RelayReplyFrame | RelayEventFrame):
                sent += len(text)
                if sent > limit:
                    raise UpstreamError(
                        502,
                        f"the MCP server's answer exceeds the gateway's limit ({limit} bytes)",
                        "response_too_large",
                    )
            await ws.send(text)

        try:
            try:
                if self._draining and self._drain_grace_over():
                    raise UpstreamError(503, "the MCP relay is draining", "relay_draining")
                self._check_token(call)
                await self.upstream.handle(call, emit)
                self.calls_served += 1
            except UpstreamError as exc:
                self.calls_failed += 1
                log.info("mcp relay %s: call %s failed: %s", self.id, call.call_id, exc.message)
                error = RelayErrorFrame(
                    call_id=call.call_id, message=exc.message, status=exc.status, code=exc.code
                )
                await ws.send(error.model_dump_json())
            except (asyncio.CancelledError, ConnectionClosed):
                raise
            except Exception as exc:
                self.calls_failed += 1
                log.exception("mcp relay %s: call %s crashed", self.id, call.call_id)
                error = RelayErrorFrame(
                    call_id=call.call_id,
                    message=f"relay error: {type(exc).__name__}: {exc}"[:4096],
                    status=500,
                    code="relay_error",
                )
                await ws.send(error.model_dump_json())
        except ConnectionClosed:
            log.debug("mcp relay %s: connection closed while call %s ran", self.id, call.call_id)


async def run_mcp_relay(
    settings: MCPRelaySettings,
    stop: asyncio.Event | None = None,
    *,
    install_signal_handlers: bool = False,
    upstream: Upstream | None = None,
) -> int:
    """Run a relay until `stop` is set or a signal arrives; returns an exit code.

    The first SIGTERM/SIGINT (or `stop`) drains: new calls are refused, in-flight ones finish
    (up to `drain_timeout_s`), then the connection closes with 1000. A second signal stops at
    once. 0: clean; 2: configuration error (e.g. the server command does not exist); 130:
    forced stop.
    """
    from gatewaytui.workers.mcp_upstream import UpstreamConfigError

    upstream = upstream or build_upstream(settings)
    stop = stop or asyncio.Event()
    force = asyncio.Event()
    client = MCPRelayClient(settings, upstream)
    with drain_on_signals(stop, force, f"mcp relay {settings.id}", enabled=install_signal_handlers):
        try:
            try:
                await upstream.start()
            except UpstreamConfigError as exc:
                log.error("mcp relay %s: %s", settings.id, exc)
                return EXIT_CONFIG
            # Register with the server's verdict when it comes soon (the usual case), so the
            # gateway learns who the server is at once rather than one status frame later.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(settings.init_timeout_s, 10.0)):
                    await upstream.settled.wait()
            log.info(
                "mcp relay %s: bridging %s for %s",
                settings.id,
                _what(settings),
                redact_url(client.url),
            )
            return await run_until_stopped([client], stop, force)
        finally:
            await upstream.close()


def _what(settings: MCPRelaySettings) -> str:
    if settings.command is not None:
        return f"stdio command {settings.command[0]!r}"
    return f"Streamable HTTP server {redact_url(settings.url or '')}"


def relay_settings_error(exc: ValidationError) -> str:
    """A one-line description of what is wrong with the settings, for the CLI."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
    )


__all__ = [
    "MCPRelayClient",
    "MCPRelaySettings",
    "SessionEnd",
    "build_upstream",
    "relay_settings_error",
    "run_mcp_relay",
]
