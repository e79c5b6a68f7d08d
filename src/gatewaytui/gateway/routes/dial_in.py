"""The connection loop shared by the peers that dial in over a WebSocket (workers and MCP
relays): register first, then frames, with the same closing codes and events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import WebSocket
from pydantic import TypeAdapter, ValidationError
from starlette.websockets import WebSocketDisconnect

from gatewaytui.gateway.events import EventLog
from gatewaytui.gateway.jobs import JobTooLargeError
from gatewaytui.gateway.routes.common import client_addr
from gatewaytui.schema.protocol import CLOSE_DUPLICATE_ID, CLOSE_POLICY_VIOLATION
from gatewaytui.shared import codec

log = logging.getLogger("gatewaytui.gateway.routes.dial_in")

REGISTER_TIMEOUT_S = 10.0
CLOSE_MESSAGE_TOO_BIG = 1009  # sent by the WebSocket layer itself, above ws_max_bytes()


class PeerConnection:
    """Adapts a Starlette WebSocket to what the worker registry and MCP relays need."""

    def __init__(self, ws: WebSocket, max_bytes: int | None = None) -> None:
        self.ws = ws
        self.closed = False
        self.max_bytes = max_bytes

    async def send(self, frame: dict[str, Any]) -> None:
        """Send one frame; one the peer must not receive (over `max_bytes`) is refused with
        JobTooLargeError (413 for the request) and the connection stays up."""
        text = codec.dumps_text(frame)
        limit = self.max_bytes
        if limit is not None and len(text) > limit // 4 and len(text.encode()) > limit:
            raise JobTooLargeError(
                f"the request makes a job frame of {len(text.encode())} bytes, over "
                f"workers.max_frame_bytes={limit}"
            )
        await self.ws.send_text(text)

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, reason=reason[:120])


class FrameError(Exception):
    """A frame that breaks the protocol: the connection is closed with 1008 and why."""


class TransportFrameError(FrameError):
    """A frame over the hard WebSocket limit: the transport has closed with 1009 already."""


def _too_big(ws: WebSocket) -> str:
    limit = getattr(ws.app.state, "ws_max_bytes", None)
    return f"frame larger than {limit} bytes" if limit else "frame over the WebSocket limit"


def frame_text(message: Mapping[str, Any], limit: int | None, protocol: str) -> str:
    """The text of a WebSocket message; binary frames and (with a limit) big ones refused."""
    text = message.get("text")
    if text is None:
        raise FrameError(f"binary frames are not part of the {protocol} protocol")
    if limit is not None and len(text) > limit // 4 and len(text.encode()) > limit:
        raise FrameError(f"frame of {len(text.encode())} bytes exceeds max_frame_bytes={limit}")
    assert isinstance(text, str)
    return text


def parse_frame(adapter: TypeAdapter[Any], text: str) -> Any:
    """One frame of a protocol's union, or a FrameError that says where it is wrong."""
    try:
        return adapter.validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise FrameError(f"malformed frame: {where}: {first.get('msg')}"[:200]) from None


@dataclass(frozen=True)
class DialIn:
    """What differs between the peers that dial in (workers, MCP relays): everything else
    about a connection — register first, then frames, closing codes, events — is shared."""

    noun: str  # "worker", "mcp relay": in close reasons and events
    parse: Callable[[Mapping[str, Any]], tuple[Any, int]]  # frame and its size; raises FrameError
    register_type: type
    register: Callable[[Any, Any, str | None], tuple[Any, dict[str, Any]]]
    duplicate_error: type[Exception]
    on_frame: Callable[[Any, Any, int], None]  # raises ValueError for a frame out of place
    disconnected: Callable[..., None]  # (record, reason, clean=...)
    events: EventLog
    refuse_kind: str = "refuse"
    tag_events: bool = False  # events carry worker_id
    send_limit: int | None = None  # frames to the peer larger than this are refused (413)


@dataclass
class _Session:
    """One dial-in connection's progress: the record once registered, and how it ended."""

    ws: WebSocket
    peer: DialIn
    conn: PeerConnection
    remote: str | None
    record: Any = None
    reason: str = "connection closed"
    clean: bool = False

    async def register(self) -> bool:
        """Read the register frame and answer it; False if the peer is gone or refused."""
        message = await asyncio.wait_for(self.ws.receive(), timeout=REGISTER_TIMEOUT_S)
        if message["type"] == "websocket.disconnect":
            if message.get("code") == CLOSE_MESSAGE_TOO_BIG:
                raise TransportFrameError(_too_big(self.ws))
            return False
        frame, _ = self.peer.parse(message)
        if not isinstance(frame, self.peer.register_type):
            raise FrameError("the first frame must be 'register'")
        try:
            self.record, reply = self.peer.register(frame, self.conn, self.remote)
        except self.peer.duplicate_error as exc:
            await self.conn.close(CLOSE_DUPLICATE_ID, str(exc))
            return False
        await self.conn.send(reply)
        return True

    async def frames(self) -> None:
        """Hand frames to the peer's handler until the connection closes or is evicted."""
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                code = message.get("code", 1000)
                if code == CLOSE_MESSAGE_TOO_BIG:  # the transport refused a frame, not the peer
                    raise TransportFrameError(_too_big(self.ws))
                self.clean = code in (1000, 1001)
                self.reason = f"connection closed by {self.peer.noun} (code {code})"
                return
            frame, size = self.peer.parse(message)
            try:
                self.peer.on_frame(self.record, frame, size)
            except ValueError as exc:
                raise FrameError(str(exc)) from None
            if self.record.gone_at is not None:  # evicted while we were reading
                self.reason = "evicted"
                return

    async def no_register(self) -> None:
        self.reason = f"no register frame within {REGISTER_TIMEOUT_S:g}s"
        self.peer.events.add(
            self.peer.refuse_kind,
            f"{self.peer.noun} connection from {self.remote} closed: {self.reason}",
            level="warning",
        )
        await self.conn.close(CLOSE_POLICY_VIOLATION, self.reason)

    async def broke_protocol(self, exc: FrameError) -> None:
        self.reason = str(exc)
        record = self.record
        who = record.id if record is not None else self.remote
        tags = {"worker_id": record.id if record is not None else None}
        self.peer.events.add(
            "protocol_error",
            f"{self.peer.noun} {who} closed: {self.reason}",
            level="error",
            **(tags if self.peer.tag_events else {}),
        )
        if not isinstance(exc, TransportFrameError):  # that one is closed already (1009)
            await self.conn.close(CLOSE_POLICY_VIOLATION, self.reason)


async def serve_dial_in(ws: WebSocket, peer: DialIn) -> None:
    """One dial-in connection: register, then frames until it closes or breaks a rule."""
    session = _Session(ws, peer, PeerConnection(ws, peer.send_limit), client_addr(ws.client))
    try:
        if await session.register():
            await session.frames()
    except TimeoutError:
        await session.no_register()
    except FrameError as exc:
        await session.broke_protocol(exc)
    except WebSocketDisconnect as exc:
        session.reason = f"connection lost (code {exc.code})"
    except Exception as exc:  # never let one connection's bug take the server down
        log.exception("%s connection handler failed", peer.noun)
        session.reason = f"internal error: {type(exc).__name__}"
        await session.conn.close(1011, "internal error")
    finally:
        session.conn.closed = True
        record = session.record
        if record is not None and record.conn is session.conn:  # unless a reconnect took it
            peer.disconnected(record, session.reason, clean=session.clean)
