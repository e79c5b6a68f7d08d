"""Messages of `WS /api/state/stream`: one snapshot, then sequenced deltas, with keep-alives.

A delta carries field-level patches: an upserted item holds its `id` and only the fields that
changed since the previous sequence number (a new item holds all of them). A client that sees
`seq` jump by more than one has missed a delta and must resync (reconnect for a snapshot).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter

from gatewaytui.schema.state import EventRecord, GatewayState
from gatewaytui.schema.wire import WireModel

# Keyed collections a delta can patch, and where each lives in GatewayState.
STREAM_COLLECTIONS: dict[str, tuple[str, ...]] = {
    "workers": ("workers",),
    "jobs": ("jobs",),
    "models": ("models",),
    "backends": ("backends",),
    "plugins": ("plugins",),
    "mcp_clients": ("mcp", "clients"),
    "mcp_sessions": ("mcp", "sessions"),
    "replicas": ("replicas",),
}


class SnapshotMessage(WireModel):
    type: Literal["snapshot"] = "snapshot"
    seq: int
    state: GatewayState


class DeltaMessage(WireModel):
    type: Literal["delta"] = "delta"
    seq: int
    ts: datetime
    server: dict[str, Any] | None = None
    upsert: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    remove: dict[str, list[str]] = Field(default_factory=dict)
    events: list[EventRecord] = Field(default_factory=list)


class KeepAliveMessage(WireModel):
    type: Literal["keepalive"] = "keepalive"
    seq: int
    ts: datetime


StreamMessage = Annotated[
    SnapshotMessage | DeltaMessage | KeepAliveMessage, Field(discriminator="type")
]
STREAM_MESSAGE_ADAPTER: TypeAdapter[StreamMessage] = TypeAdapter(StreamMessage)
