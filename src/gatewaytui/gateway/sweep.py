"""One sweep for every peer that dials in and must keep talking (workers, MCP relays): evict
the silent ones (closing their socket), forget the gone ones after the retention period."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger("gatewaytui.gateway.sweep")


class SweptPeer(Protocol):
    """What the sweep reads of a peer's record."""

    @property
    def last_heartbeat(self) -> float: ...

    @property
    def gone_at(self) -> float | None: ...

    @property
    def conn(self) -> Any: ...


@dataclass(frozen=True)
class SilentPeerSweep:
    """The rules of one kind of peer; `run()` applies them every `interval` seconds."""

    noun: str  # "worker", "mcp relay": for the log
    peers: Callable[[], Iterable[Any]]  # every record, live and gone
    expiry: float  # silence longer than this evicts
    retention: float  # gone records stay visible this long
    interval: float
    evict: Callable[[Any, float], None]  # (record, silence): disconnect it as evicted
    forget: Callable[[Any], None]  # drop a gone record for good
    close_code: int

    def sweep(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for peer in list(self.peers()):
            if peer.gone_at is None:
                silence = now - peer.last_heartbeat
                if silence > self.expiry:
                    self._evict(peer, silence)
            elif now - peer.gone_at > self.retention:
                self.forget(peer)

    def _evict(self, peer: SweptPeer, silence: float) -> None:
        conn = peer.conn
        self.evict(peer, silence)
        if conn is not None:
            asyncio.get_running_loop().create_task(conn.close(self.close_code, "heartbeat expired"))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.sweep()
            except Exception:
                log.exception("%s sweep failed", self.noun)
