"""The MCP relay protocol spoken over `WS /api/mcp/connect` (documented in docs/protocol.md).

An MCP server behind NAT cannot be called directly, so a relay next to it dials *out* to the
gateway, registers under a client id, and then carries MCP clients' JSON-RPC messages (which
reach the gateway as `POST /mcp/{client_id}`) to the server and its replies back. Every frame
is one JSON text message with a `type`; JSON-RPC messages travel inside frames unchanged.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter

from gatewaytui.schema.wire import WireModel

MCP_RELAY_PROTOCOL_VERSION = 1

# Same id rules as workers: ids show up in URLs (`/mcp/{client_id}`) and in operators' tables.
RELAY_ID_PATTERN = r"^[A-Za-z0-9._:@-]+$"
# The header MCP clients put the relay's own token in; the gateway passes it on untouched.
RELAY_TOKEN_HEADER = "X-Relay-Token"
# Capabilities an MCP server can declare at initialization (the connector capabilities).
KNOWN_CAPABILITIES = ("tools", "resources", "prompts", "logging", "completions")

# Close codes, as for workers (1008 is the RFC 6455 policy-violation code).
CLOSE_POLICY_VIOLATION = 1008
CLOSE_DEAD = 4008
CLOSE_DUPLICATE_ID = 4009

Headers = dict[str, str]


class MCPServerInfo(WireModel):
    """What the MCP server reported at initialization (`serverInfo` and `capabilities`)."""

    name: str | None = Field(default=None, max_length=256)
    title: str | None = Field(default=None, max_length=256)
    version: str | None = Field(default=None, max_length=128)
    protocol_version: str | None = Field(default=None, max_length=64)
    capabilities: list[str] = Field(default_factory=list, max_length=64)


# ---- relay -> gateway -------------------------------------------------------------------


class RelayRegisterFrame(WireModel):
    """The first frame: who this relay is and what it bridges to."""

    type: Literal["register"] = "register"
    id: str = Field(min_length=1, max_length=128, pattern=RELAY_ID_PATTERN)
    name: str = Field(default="", max_length=256)
    transport: Literal["stdio", "http"]
    version: str = Field(default="", max_length=128)
    token_required: bool = False
    ready: bool = True
    reason: str | None = Field(default=None, max_length=1024)
    server: MCPServerInfo | None = None
    protocol: int = MCP_RELAY_PROTOCOL_VERSION


class RelayHeartbeatFrame(WireModel):
    type: Literal["heartbeat"] = "heartbeat"


class RelayStatusFrame(WireModel):
    """The MCP server came up, went down or (re)initialized; `server` null means unchanged."""

    type: Literal["status"] = "status"
    ready: bool
    reason: str | None = Field(default=None, max_length=1024)
    server: MCPServerInfo | None = None


class RelayReplyFrame(WireModel):
    """The whole answer to a call: an HTTP status, `mcp-*` headers and one JSON-RPC message
    (none for 202 Accepted, the answer to a notification)."""

    type: Literal["reply"] = "reply"
    call_id: str
    status: int = Field(default=200, ge=200, le=599)
    headers: Headers = Field(default_factory=dict)
    message: dict[str, Any] | None = None


class RelayEventFrame(WireModel):
    """One message of a streamed answer (progress notifications, then the response).
    The first event's `headers` become the HTTP response headers."""

    type: Literal["event"] = "event"
    call_id: str
    headers: Headers = Field(default_factory=dict)
    message: dict[str, Any]


class RelayEndFrame(WireModel):
    """A streamed answer is complete."""

    type: Literal["end"] = "end"
    call_id: str


class RelayErrorFrame(WireModel):
    """The relay could not get an answer (server down, token refused, reply too large)."""

    type: Literal["error"] = "error"
    call_id: str
    message: str = Field(max_length=4096)
    status: int = Field(default=502, ge=400, le=599)
    code: str | None = Field(default=None, max_length=64)


RelayFrame = Annotated[
    RelayRegisterFrame
    | RelayHeartbeatFrame
    | RelayStatusFrame
    | RelayReplyFrame
    | RelayEventFrame
    | RelayEndFrame
    | RelayErrorFrame,
    Field(discriminator="type"),
]
RELAY_FRAME_ADAPTER: TypeAdapter[RelayFrame] = TypeAdapter(RelayFrame)

# ---- gateway -> relay -------------------------------------------------------------------


class RelayRegisteredFrame(WireModel):
    """The gateway's answer to `register`: its limits, which the relay should respect."""

    type: Literal["registered"] = "registered"
    client_id: str
    heartbeat_interval_s: float
    dead_after_s: float
    max_request_bytes: int
    max_response_bytes: int


class RelayCallFrame(WireModel):
    """One HTTP request of an MCP client: a JSON-RPC message (POST) or a session end (DELETE).

    `headers` are the client's `mcp-*` headers (session id, protocol version); `token` is what
    the client sent in `X-Relay-Token`, for relays that require their own token.
    """

    type: Literal["call"] = "call"
    call_id: str
    http_method: Literal["POST", "DELETE"] = "POST"
    headers: Headers = Field(default_factory=dict)
    message: dict[str, Any] | None = None
    token: str | None = Field(default=None, repr=False)


class RelayCancelFrame(WireModel):
    """Stop working on a call: its client left, or it ran out of time."""

    type: Literal["cancel"] = "cancel"
    call_id: str
    reason: str = ""


GatewayRelayFrame = Annotated[
    RelayRegisteredFrame | RelayCallFrame | RelayCancelFrame, Field(discriminator="type")
]
GATEWAY_RELAY_FRAME_ADAPTER: TypeAdapter[GatewayRelayFrame] = TypeAdapter(GatewayRelayFrame)


def mcp_protocol_json_schema() -> dict[str, Any]:
    """The published JSON Schema of both directions (docs/mcp_protocol.schema.json)."""
    return {
        "relay_to_gateway": RELAY_FRAME_ADAPTER.json_schema(),
        "gateway_to_relay": GATEWAY_RELAY_FRAME_ADAPTER.json_schema(),
    }


def server_info_from_initialize(result: Any) -> MCPServerInfo | None:
    """Read `serverInfo`, `protocolVersion` and capability names from an initialize result.

    Pure and forgiving: a server that reports odd types still yields what can be read.
    """
    if not isinstance(result, dict):
        return None
    info = result.get("serverInfo")
    info = info if isinstance(info, dict) else {}
    caps = result.get("capabilities")
    names = sorted(str(k)[:64] for k in caps)[:64] if isinstance(caps, dict) else []

    def text(value: Any, limit: int) -> str | None:
        return str(value)[:limit] if isinstance(value, str | int | float) else None

    return MCPServerInfo(
        name=text(info.get("name"), 256),
        title=text(info.get("title"), 256),
        version=text(info.get("version"), 128),
        protocol_version=text(result.get("protocolVersion"), 64),
        capabilities=names,
    )
