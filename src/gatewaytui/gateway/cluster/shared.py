"""Fleet-wide drain flags and the fleet's event log, both kept in Redis.

Drain flags are keyed by worker id, not by connection: a drained worker that reconnects to
another replica, or to its owner after a restart, is still drained. Each replica keeps a copy
of the flags so that admitting a worker never waits for Redis; a flag set while Redis is down
is written when it returns.

Events go to one capped stream; each replica appends its own (with its id) and reads the
others', which join its local log as they arrive.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any

from gatewaytui.gateway.cluster import keys
from gatewaytui.gateway.cluster.link import LINK_ERRORS, RedisDownError, loads
from gatewaytui.gateway.cluster.mirror import encode

if TYPE_CHECKING:
    from gatewaytui.gateway.cluster.host import FleetNode

log = logging.getLogger("gatewaytui.gateway.cluster")

# Events about the fleet itself are seen by every replica at once: each keeps them local.
LOCAL_ONLY_KINDS = frozenset({"replica_join", "replica_gone", "cluster_degraded", "cluster_ok"})


class DrainFlags:
    def __init__(self, node: FleetNode) -> None:
        self.node = node
        self.flags: dict[str, dict[str, Any]] = {}
        self.loaded = False
        self._pending: dict[str, bool] = {}
        self._wake = asyncio.Event()

    def draining(self, worker_id: str) -> bool | None:
        """The fleet's flag for a worker; None before the flags were ever read."""
        if not self.loaded and worker_id not in self._pending:
            return None
        return worker_id in self.flags

    def set(self, worker_id: str, draining: bool) -> None:
        if draining:
            self.flags[worker_id] = {"since": time.time(), "by": self.node.id}
        else:
            self.flags.pop(worker_id, None)
        self._pending[worker_id] = draining
        self._wake.set()

    async def load(self) -> None:
        raw: Any = await self.node.link.call(lambda c: c.hgetall(keys.DRAIN))
        flags = {k: v for k, v in ((k, loads(v)) for k, v in raw.items()) if isinstance(v, dict)}
        for worker_id, draining in self._pending.items():  # not yet written: ours win
            if draining:
                flags[worker_id] = self.flags.get(worker_id) or {"since": time.time()}
            else:
                flags.pop(worker_id, None)
        self.flags = flags
        self.loaded = True

    async def reseed(self) -> None:
        """Redis lost its data: put back the flags this replica knows (others do too)."""
        if not self.flags:
            return
        mapping = {worker_id: encode(flag) for worker_id, flag in self.flags.items()}

        async def run(client: Any) -> Any:
            pipe = client.pipeline(transaction=False)
            for worker_id, text in mapping.items():
                pipe.hsetnx(keys.DRAIN, worker_id, text)
            return await pipe.execute()

        await self.node.link.call(run)

    def on_message(self, message: dict[str, Any]) -> None:
        worker_id = message.get("id")
        if not isinstance(worker_id, str) or worker_id in self._pending:
            return
        if message.get("draining"):
            self.flags[worker_id] = {"since": message.get("since"), "by": message.get("by")}
        else:
            self.flags.pop(worker_id, None)

    async def writer_loop(self) -> None:
        while True:
            await self._wake.wait()
            await self.node.link.up_event.wait()
            self._wake.clear()
            pending = dict(self._pending)
            try:
                await self.node.link.call(lambda c, p=pending: self._write(c, p))  # type: ignore[misc]
            except RedisDownError:
                self._wake.set()  # retried once the link is back
                continue
            for worker_id, draining in pending.items():
                if self._pending.get(worker_id) == draining:
                    del self._pending[worker_id]

    async def _write(self, client: Any, pending: dict[str, bool]) -> Any:
        pipe = client.pipeline(transaction=False)
        for worker_id, draining in pending.items():
            flag = self.flags.get(worker_id) or {}
            if draining:
                pipe.hset(keys.DRAIN, worker_id, encode(flag))
            else:
                pipe.hdel(keys.DRAIN, worker_id)
            note = {"id": worker_id, "draining": draining, **flag}
            pipe.publish(keys.DRAIN_CHANNEL, encode(note))
        return await pipe.execute()


class FleetEvents:
    """Appends this replica's events to the fleet stream and adds the others' to its log."""

    def __init__(self, node: FleetNode, size: int) -> None:
        self.node = node
        self.size = max(size, 100)
        self.origin = uuid.uuid4().hex[:12]  # this process, not just this replica id
        self._outbox: deque[dict[str, Any]] = deque(maxlen=self.size)
        self._wake = asyncio.Event()
        self.last_id = "$"

    def on_local(self, event: dict[str, Any]) -> None:
        event["replica"] = self.node.id
        if event.get("kind") not in LOCAL_ONLY_KINDS:
            self._outbox.append(event)
            self._wake.set()

    async def writer_loop(self) -> None:
        while True:
            await self._wake.wait()
            await self.node.link.up_event.wait()
            self._wake.clear()
            batch = list(self._outbox)
            if not batch:
                continue

            async def run(client: Any, batch: list[dict[str, Any]] = batch) -> Any:
                pipe = client.pipeline(transaction=False)
                for event in batch:
                    fields = {"o": self.origin, "e": encode(event)}
                    pipe.xadd(keys.EVENTS, fields, maxlen=self.size, approximate=True)
                return await pipe.execute()

            try:
                await self.node.link.call(run)
            except RedisDownError:
                self._wake.set()
                continue
            for _ in batch:
                self._outbox.popleft()

    async def load_history(self) -> None:
        """The fleet's recent events from before this replica started (others' only), and
        the stream position to follow from: reading from `$` on every XREAD would drop what
        was added between two reads until the first entry arrives."""
        entries: Any = await self.node.link.call(
            lambda c: c.xrevrange(keys.EVENTS, count=self.node.config.event_log_size)
        )
        self.last_id = entries[0][0] if entries else "0-0"
        for _, fields in reversed(entries):
            self._add(fields)

    def _add(self, fields: dict[str, str]) -> None:
        if fields.get("o") == self.origin:
            return
        event = loads(fields.get("e"))
        if isinstance(event, dict):
            self.node.gateway.events.append_remote(event)

    async def reader_loop(self) -> None:
        """Follow the stream (XREAD BLOCK on the blocking pool); reconnect after failures."""
        client = self.node.link.blocking
        while True:
            await self.node.link.up_event.wait()
            if self.last_id == "$":  # first time Redis answers: the fleet's recent events
                try:
                    await self.load_history()
                except RedisDownError:
                    await asyncio.sleep(0.5)
                    continue
            try:  # the blocking pool has no socket timeout: bound the call here
                async with asyncio.timeout(1.0 + self.node.link.timeout):
                    found: Any = await client.xread(
                        {keys.EVENTS: self.last_id}, count=200, block=1000
                    )
            except LINK_ERRORS as exc:
                self.node.link.set_down(exc)
                await asyncio.sleep(0.5)  # back off before the next try
                continue
            for _, entries in found or ():
                for entry_id, fields in entries:
                    self.last_id = entry_id
                    self._add(fields)
