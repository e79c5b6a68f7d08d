"""The live state stream: one snapshot, then coalesced, sequenced, field-level deltas.

Changes are only *marked* where they happen (`touch`); a ticker at most `rate` times a
second diffs the marked items against what was last sent, encodes one delta and hands the
same bytes to every subscriber. A subscriber whose queue overflows is skipped until its
sender catches up and then gets a fresh snapshot, so a slow client never slows the gateway.

No work for nobody: while no subscriber is connected the hub is *idle* — `touch` marks
nothing, the ticker sleeps until someone subscribes (no diff, no `before_flush`, no
encoding, no keep-alive), and events go straight to the bounded log a snapshot shows. The
first subscriber wakes it: the sent state is rebuilt from the collections once (what a
snapshot costs anyway), `seq` moves on by one, and deltas flow from there. Profiles of a
loaded gateway with no panel attached showed half of its JSON time in a delta nobody read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from gatewaytui.gateway.clock import iso_now
from gatewaytui.schema import SCHEMA_VERSION
from gatewaytui.schema.stream import STREAM_COLLECTIONS
from gatewaytui.shared import codec

log = logging.getLogger("gatewaytui.gateway.hub")

Item = dict[str, Any]
# Told of every change this process makes to its own state, watched or not: (collection, id).
TouchObserver = Callable[[str, str], None]
_MISSING = object()
_RESYNC = object()


@dataclass
class Collection:
    """How the hub reads one keyed collection: one item by id, or all of them."""

    get: Callable[[str], Item | None]
    all: Callable[[], Iterable[Item]]


@dataclass(eq=False)
class Subscriber:
    queue: asyncio.Queue[Any] = field(default_factory=lambda: asyncio.Queue(maxsize=64))
    resyncing: bool = False
    resyncs: int = 0


def encode(message: Item) -> str:
    """Compact UTF-8 JSON text (orjson where installed: snapshots and deltas are large)."""
    return codec.dumps_text(message)


class StateHub:
    def __init__(
        self,
        collections: dict[str, Collection],
        server: Callable[[], Item],
        *,
        rate: float = 4.0,
        keepalive: float = 5.0,
        event_log_size: int = 500,
        before_flush: Callable[[], None] | None = None,
    ) -> None:
        unknown = set(collections) - set(STREAM_COLLECTIONS)
        if unknown:
            raise ValueError(f"unknown stream collections: {sorted(unknown)}")
        self.collections = collections
        self._server = server
        self.interval = 1.0 / rate
        self.keepalive = keepalive
        self._before_flush = before_flush
        self.seq = 0
        # Insertion-ordered (dicts as ordered sets): new items reach clients in the order
        # they appeared, so a fresh panel lists plugins, workers and events as they came.
        self._dirty: dict[str, dict[str, None]] = {name: {} for name in collections}
        self._server_dirty = True
        self._sent: dict[str, dict[str, Item]] = {name: {} for name in collections}
        self._sent_server: Item = {}
        self._pending_events: list[Item] = []
        self._sent_events: deque[Item] = deque(maxlen=max(event_log_size, 1))
        self._subscribers: set[Subscriber] = set()
        self._snapshot_cache: tuple[int, str] | None = None
        self._last_send = time.monotonic()
        self._watching = False  # a subscriber is connected: changes are tracked and sent
        self._woken = asyncio.Event()  # made here: Event() binds no loop until first awaited
        self._observers: tuple[TouchObserver, ...] = ()
        self.bytes_sent = 0
        self.deltas_sent = 0
        self.resyncs = 0

    def add_collection(self, name: str, collection: Collection) -> None:
        """Register a collection owned by a subsystem built after the hub (e.g. MCP relays)."""
        if name not in STREAM_COLLECTIONS:
            raise ValueError(f"unknown stream collection: {name!r}")
        if name in self.collections:
            raise ValueError(f"stream collection {name!r} is already registered")
        self.collections[name] = collection
        self._dirty[name] = {}
        self._sent[name] = {}

    # -- marking changes --------------------------------------------------------------------

    def observe_touches(self, observer: TouchObserver) -> None:
        """Also call `observer` for every `touch`, even while idle: a subsystem that follows
        this process's own changes (the fleet publishes them to the other replicas). Keep it
        cheap: it runs on the request path. `touch_view` does not reach it."""
        self._observers = (*self._observers, observer)

    def touch(self, collection: str, item_id: str) -> None:
        """An item of this process's own state changed (or appeared, or went)."""
        if self._watching:
            self._dirty[collection][item_id] = None
        for observer in self._observers:
            observer(collection, item_id)

    def touch_view(self, collection: str, item_id: str) -> None:
        """An item changed in a view this process only shows (another replica's items, the
        fleet's replicas): sent to subscribers like any change, but not to the observers."""
        if self._watching:
            self._dirty[collection][item_id] = None

    def touch_all(self, collection: str) -> None:
        if not self._watching:
            return
        dirty = self._dirty[collection]
        dirty.update(dict.fromkeys(self._sent[collection]))
        dirty.update(dict.fromkeys(item["id"] for item in self.collections[collection].all()))

    def touch_server(self) -> None:
        self._server_dirty = True

    def add_event(self, event: Item) -> None:
        if self._watching:
            self._pending_events.append(event)
        else:  # nobody to send it to: straight into the log the next snapshot shows
            self._sent_events.append(event)

    @property
    def watching(self) -> bool:
        """True while a subscriber is connected (the hub tracks and sends changes)."""
        return self._watching

    def _wake(self) -> None:
        """The first subscriber arrived: rebuild what was "sent" from the collections, as
        one new sequence number, so its snapshot and the deltas after it are current."""
        if self._before_flush is not None:
            self._before_flush()
        for name, collection in self.collections.items():
            self._sent[name] = {item["id"]: item for item in collection.all()}
            self._dirty[name].clear()
        self._sent_server = self._server()
        self._server_dirty = False
        self._sent_events.extend(self._pending_events)
        self._pending_events = []
        self.seq += 1
        self._watching = True
        self._last_send = time.monotonic()
        self._woken.set()

    def _sleep(self) -> None:
        """The last subscriber left: stop tracking until the next one comes."""
        self._watching = False
        self._woken.clear()
        for dirty in self._dirty.values():
            dirty.clear()
        self._sent_events.extend(self._pending_events)
        self._pending_events = []

    # -- building messages ------------------------------------------------------------------

    def flush(self) -> str | None:
        """Diff what changed since the last delta; return the encoded delta, or None."""
        if self._before_flush is not None:
            self._before_flush()
        upsert: dict[str, list[Item]] = {}
        remove: dict[str, list[str]] = {}
        for name, dirty in self._dirty.items():
            if not dirty:
                continue
            patches, gone = self._diff(name, dirty)
            dirty.clear()
            if patches:
                upsert[name] = patches
            if gone:
                remove[name] = gone
        server_patch = self._server_patch()
        events, self._pending_events = self._pending_events, []
        self._sent_events.extend(events)
        if not (upsert or remove or server_patch or events):
            return None
        self.seq += 1
        message: Item = {"type": "delta", "seq": self.seq, "ts": iso_now()}
        if server_patch:
            message["server"] = server_patch
        if upsert:
            message["upsert"] = upsert
        if remove:
            message["remove"] = remove
        if events:
            message["events"] = events
        return encode(message)

    def _diff(self, name: str, dirty: Iterable[str]) -> tuple[list[Item], list[str]]:
        """One collection's changed fields (whole items when new) and its removed ids."""
        getter = self.collections[name].get
        sent = self._sent[name]
        patches: list[Item] = []
        gone: list[str] = []
        for item_id in dirty:
            current = getter(item_id)
            previous = sent.get(item_id)
            if current is None:
                if previous is not None:
                    del sent[item_id]
                    gone.append(item_id)
                continue
            if previous is None:
                patches.append(current)
            else:
                patch = {k: v for k, v in current.items() if previous.get(k, _MISSING) != v}
                if not patch:
                    continue
                patch["id"] = item_id
                patches.append(patch)
            sent[item_id] = current
        return patches, gone

    def _server_patch(self) -> Item | None:
        if not self._server_dirty:
            return None
        self._server_dirty = False
        current_server = self._server()
        patch = {k: v for k, v in current_server.items() if self._sent_server.get(k, _MISSING) != v}
        self._sent_server = current_server
        return patch or None

    def _state_from(
        self, items: Callable[[str], list[Item]], server: Item, events: list[Item]
    ) -> Item:
        state: Item = {
            "schema_version": SCHEMA_VERSION,
            "generated_at": iso_now(),
            "seq": self.seq,
            "server": server,
            "workers": [],
            "jobs": [],
            "models": [],
            "mcp": {"clients": [], "sessions": []},
            "backends": [],
            "plugins": [],
            "events": events,
        }
        for name, path in STREAM_COLLECTIONS.items():
            if name not in self.collections:
                continue
            target = state
            for part in path[:-1]:
                target = target[part]
            target[path[-1]] = items(name)
        return state

    def snapshot_text(self) -> str:
        """The snapshot as of the current `seq` (what the deltas so far add up to)."""
        if self._snapshot_cache is None or self._snapshot_cache[0] != self.seq:
            state = self._state_from(
                lambda name: list(self._sent[name].values()),
                self._sent_server,
                list(self._sent_events),
            )
            text = encode({"type": "snapshot", "seq": self.seq, "state": state})
            self._snapshot_cache = (self.seq, text)
        return self._snapshot_cache[1]

    def full_state(self, events: list[Item]) -> Item:
        """A fresh state for `GET /api/state`, read directly rather than from the stream."""
        if self._before_flush is not None:
            self._before_flush()
        return self._state_from(
            lambda name: list(self.collections[name].all()), self._server(), events
        )

    # -- distribution -----------------------------------------------------------------------

    def broadcast(self, text: str) -> None:
        for sub in self._subscribers:
            if sub.resyncing:
                continue
            try:
                sub.queue.put_nowait(text)
            except asyncio.QueueFull:
                self._start_resync(sub)

    def _start_resync(self, sub: Subscriber) -> None:
        while not sub.queue.empty():
            sub.queue.get_nowait()
        sub.resyncing = True
        sub.resyncs += 1
        self.resyncs += 1
        sub.queue.put_nowait(_RESYNC)

    def tick(self) -> None:
        """One coalescing step: send a delta if anything changed, else maybe a keep-alive.
        Nothing at all while idle (no subscriber)."""
        if not self._watching:
            return
        text = self.flush()
        now = time.monotonic()
        if text is None:
            if now - self._last_send < self.keepalive:
                return
            text = encode({"type": "keepalive", "seq": self.seq, "ts": iso_now()})
        else:
            self.deltas_sent += 1
        self._last_send = now
        self.broadcast(text)

    async def run(self) -> None:
        """Tick forever at the configured rate (chained sleeps: ticks never pile up)."""
        while True:
            if not self._watching:
                await self._woken.wait()  # idle: no timer at all until someone subscribes
            started = time.monotonic()
            try:
                self.tick()
            except Exception:  # a bug in one tick must not stop the stream
                log.exception("state hub tick failed")
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(self.interval - elapsed, 0.01))

    async def serve(self, send_text: Callable[[str], Awaitable[None]]) -> None:
        """Feed one subscriber until its connection fails (the caller handles closing)."""
        sub = Subscriber()
        if not self._watching:
            self._wake()
        self._subscribers.add(sub)
        try:
            text = self.snapshot_text()
            await send_text(text)
            self.bytes_sent += len(text)
            while True:
                item = await sub.queue.get()
                if item is _RESYNC:
                    sub.resyncing = False
                    item = self.snapshot_text()
                await send_text(item)
                self.bytes_sent += len(item)
        finally:
            self._subscribers.discard(sub)
            if not self._subscribers and self._watching:
                self._sleep()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
