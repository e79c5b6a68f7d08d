"""What each replica publishes about its own workers, jobs and MCP clients, and the mirror
of what the others published, merged into one fleet-wide view.

The owner of an item writes its JSON into a Redis hash per collection (`keys.items`) and
announces the ids that changed on one channel, coalesced to `cluster.publish_rate` (a change
after a quiet spell goes out at once, later ones wait for the next slot). Readers fetch just
those ids. Every announcement carries the owner's version; a gap (a lost message, a restart,
a Redis outage) makes the reader reload that replica's hashes whole.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from gatewaytui.gateway.clock import iso
from gatewaytui.gateway.cluster import keys
from gatewaytui.gateway.cluster.link import RedisDownError, loads

if TYPE_CHECKING:
    from gatewaytui.gateway.cluster.host import FleetNode

log = logging.getLogger("gatewaytui.gateway.cluster")

Item = dict[str, Any]
MIRRORED = ("workers", "jobs", "mcp_clients")
SERVING = frozenset({"connected", "idle", "working"})
# Items of a replica that left are kept as gone for so long (workers, MCP clients).
KEEP_AS_GONE = ("workers", "mcp_clients")


def encode(item: Item) -> str:
    return json.dumps(item, separators=(",", ":"), ensure_ascii=False)


def _gone(item: Item) -> bool:
    return item.get("status") == "gone"


class FleetMirror:
    """Publishes this replica's items; keeps and merges the other replicas' items."""

    def __init__(
        self,
        node: FleetNode,
        local_get: dict[str, Callable[[str], Item | None]],
        local_all: dict[str, Callable[[], Iterable[Item]]],
    ) -> None:
        self.node = node
        self._local_get = local_get
        self._local_all = local_all
        # collection -> item id -> replica id -> item (an id may briefly live on two)
        self.remote: dict[str, dict[str, dict[str, Item]]] = {c: {} for c in MIRRORED}
        self.orphans: dict[str, dict[str, tuple[float, Item]]] = {c: {} for c in MIRRORED}
        self.versions: dict[str, int] = {}
        self.version = 0
        self.need_full = True
        self._dirty: dict[str, dict[str, None]] = {c: {} for c in MIRRORED}
        # What this replica's hashes hold: a job that came and went between two publications
        # costs Redis nothing (no HDEL, no note), the common case of a short request.
        self._in_redis: dict[str, set[str]] = {c: set() for c in MIRRORED}
        self._wake = asyncio.Event()
        self._now = asyncio.Event()
        self._models: dict[str, Item] | None = None
        self._load: dict[str, dict[str, dict[str, int]]] | None = None  # replica_load's cache
        self.published = 0
        self.bytes_published = 0

    # ---- this replica's items -------------------------------------------------------------

    def local_item(self, collection: str, item_id: str) -> Item | None:
        item = self._local_get[collection](item_id)
        if item is not None:
            item["replica"] = self.node.id  # a fresh dict from to_dict(): safe to extend
        return item

    def mark(self, collection: str, item_id: str) -> None:
        """A local item changed (called from the hub's touch: keep it cheap)."""
        self._dirty[collection][item_id] = None
        self._wake.set()

    def publish_now(self) -> None:
        """Skip the wait for the next slot once (an operator action just changed something)."""
        self._wake.set()
        self._now.set()

    async def publish_loop(self) -> None:
        interval = 1.0 / self.node.config.cluster_publish_rate
        while True:
            await self._wake.wait()
            if not self.node.link.up:
                await self.node.link.up_event.wait()
                continue
            self._wake.clear()
            try:
                if self.need_full:
                    await self.publish_full()
                else:
                    await self.publish()
            except RedisDownError:
                self.need_full = True  # what was dirty is lost: republish all on recovery
                continue
            except Exception:
                log.exception("publishing this replica's state failed")
                self.need_full = True
            try:  # the next slot, unless an action asks for its change to go out now
                async with asyncio.timeout(interval):
                    await self._now.wait()
            except TimeoutError:
                pass
            self._now.clear()

    async def publish(self) -> None:
        dirty, self._dirty = self._dirty, {c: {} for c in MIRRORED}
        changed: dict[str, list[str]] = {}
        deleted: dict[str, list[str]] = {}
        writes: list[tuple[str, dict[str, str] | list[str]]] = []
        size = 0
        for collection, ids in dirty.items():
            if not ids:
                continue
            sets: dict[str, str] = {}
            dels: list[str] = []
            held = self._in_redis[collection]
            for item_id in ids:
                item = self.local_item(collection, item_id)
                if item is None:
                    if item_id in held:
                        held.discard(item_id)
                        dels.append(item_id)
                else:
                    text = encode(item)
                    size += len(text)
                    sets[item_id] = text
                    held.add(item_id)
            if sets:
                writes.append((collection, sets))
                changed[collection] = list(sets)
            if dels:
                writes.append((collection, dels))
                deleted[collection] = dels
        if not writes:
            return
        self.version += 1
        note = encode({"r": self.node.id, "v": self.version, "c": changed, "d": deleted})

        async def run(client: Any) -> Any:
            pipe = client.pipeline(transaction=False)
            for collection, what in writes:
                key = keys.items(self.node.id, collection)
                if isinstance(what, dict):
                    pipe.hset(key, mapping=what)
                else:
                    pipe.hdel(key, *what)
            pipe.publish(keys.CHANGES, note)
            return await pipe.execute()

        await self.node.link.call(run)
        self.published += 1
        self.bytes_published += size + len(note)

    async def publish_full(self) -> None:
        """Replace this replica's hashes with everything it holds (start, after an outage)."""
        self._dirty = {c: {} for c in MIRRORED}
        everything: dict[str, dict[str, str]] = {}
        for collection in MIRRORED:
            everything[collection] = {}
            for item in self._local_all[collection]():
                item["replica"] = self.node.id
                everything[collection][item["id"]] = encode(item)
        self.version += 1
        note = encode({"r": self.node.id, "v": self.version, "full": True})

        async def run(client: Any) -> Any:
            pipe = client.pipeline(transaction=True)
            for collection, mapping in everything.items():
                key = keys.items(self.node.id, collection)
                pipe.delete(key)
                if mapping:
                    pipe.hset(key, mapping=mapping)
            ttl_ms = int(self.node.config.cluster_replica_ttl * 3000)
            pipe.set(keys.published(self.node.id), str(self.version), px=ttl_ms)
            pipe.publish(keys.CHANGES, note)
            return await pipe.execute()

        await self.node.link.call(run)
        self._in_redis = {c: set(mapping) for c, mapping in everything.items()}
        self.need_full = False
        self.published += 1

    # ---- the other replicas' items --------------------------------------------------------

    async def on_changes(self, message: Item) -> None:
        replica = message.get("r")
        version = message.get("v")
        if not isinstance(replica, str) or replica == self.node.id or not isinstance(version, int):
            return
        last = self.versions.get(replica)
        self.versions[replica] = version
        if message.get("full") or last is None or version != last + 1:
            await self.load_replica(replica)
            return
        changed: dict[str, list[str]] = {
            c: ids for c, ids in (message.get("c") or {}).items() if c in MIRRORED and ids
        }
        if changed:

            async def run(client: Any) -> Any:
                pipe = client.pipeline(transaction=False)
                for collection, ids in changed.items():
                    pipe.hmget(keys.items(replica, collection), ids)
                return await pipe.execute()

            results = await self.node.link.call(run)
            for (collection, ids), values in zip(changed.items(), results, strict=True):
                for item_id, raw in zip(ids, values, strict=True):
                    item = loads(raw)
                    if isinstance(item, dict):
                        self._set(replica, collection, item_id, item)
                    else:
                        self._remove(replica, collection, item_id)
        for collection, ids in (message.get("d") or {}).items():
            if collection in MIRRORED:
                for item_id in ids:
                    self._remove(replica, collection, item_id)

    async def load_replica(self, replica: str) -> None:
        """Reload everything a replica published (it is new to us, or we missed something).

        Only a complete publication removes items: right after Redis lost its data a
        replica's hashes are empty or partial until it writes everything back, and dropping
        its live workers then would leave requests for their models queued here (or 404)."""

        async def run(client: Any) -> Any:
            pipe = client.pipeline(transaction=True)  # the hashes and their marker as one
            for collection in MIRRORED:
                pipe.hgetall(keys.items(replica, collection))
            pipe.exists(keys.published(replica))
            return await pipe.execute()

        *results, complete = await self.node.link.call(run)
        for collection, mapping in zip(MIRRORED, results, strict=True):
            fresh = {k: v for k, v in ((k, loads(raw)) for k, raw in mapping.items()) if v}
            for item_id, by_replica in list(self.remote[collection].items()):
                if complete and replica in by_replica and item_id not in fresh:
                    self._remove(replica, collection, item_id)
            for item_id, item in fresh.items():
                if isinstance(item, dict):
                    self._set(replica, collection, item_id, item)

    def forget_replica(self, replica: str, now: float | None = None) -> None:
        """A replica's registration expired: its workers and relays show as gone, its jobs
        disappear (its clients lost them with it)."""
        now = time.time() if now is None else now
        self.versions.pop(replica, None)
        for collection in MIRRORED:
            for item_id, by_replica in list(self.remote[collection].items()):
                item = by_replica.get(replica)
                if item is None:
                    continue
                self._remove(replica, collection, item_id)
                if collection in KEEP_AS_GONE:
                    gone = dict(item, status="gone", inflight=0)
                    if not _gone(item):
                        gone["status_reason"] = f"its replica {replica} is gone"
                        gone["gone_at"] = iso(now)
                    self.orphans[collection][item_id] = (now, gone)
                    self.node.touch(collection, item_id)

    def sweep(self, retention: float, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for collection, orphans in self.orphans.items():
            for item_id, (since, _) in list(orphans.items()):
                if now - since > retention:
                    del orphans[item_id]
                    self.node.touch(collection, item_id)

    def clear_remote(self) -> None:
        """Forget every replica's versions (after an outage: reload all on next message)."""
        self.versions.clear()

    def _set(self, replica: str, collection: str, item_id: str, item: Item) -> None:
        by_replica = self.remote[collection].setdefault(item_id, {})
        old = by_replica.get(replica)
        item["replica"] = replica
        by_replica[replica] = item
        self.orphans[collection].pop(item_id, None)
        self._changed(collection, item_id, old, item)

    def _remove(self, replica: str, collection: str, item_id: str) -> None:
        by_replica = self.remote[collection].get(item_id)
        if by_replica is None or replica not in by_replica:
            return
        old = by_replica.pop(replica)
        if not by_replica:
            del self.remote[collection][item_id]
        self._changed(collection, item_id, old, None)

    def _changed(self, collection: str, item_id: str, old: Item | None, new: Item | None) -> None:
        self.node.touch(collection, item_id)
        if collection == "mcp_clients":
            return
        self._models = None
        if collection == "workers":
            self._load = None
        affected: set[str] = set()
        for item in (old, new):
            if item is None:
                continue
            if collection == "workers":
                affected.update(m for m in item.get("models") or () if isinstance(m, str))
            elif isinstance(item.get("model"), str):
                affected.add(item["model"])
        for model in affected:
            self.node.touch("models", model)
        self.node.remote_changed()

    # ---- the merged view ------------------------------------------------------------------

    def get(self, collection: str, item_id: str) -> Item | None:
        """One item fleet-wide: a live one wherever it is, else a gone one."""
        local = self.local_item(collection, item_id)
        if local is not None and not _gone(local):
            return local
        fallback = local
        for item in self.remote[collection].get(item_id, {}).values():
            if not _gone(item):
                return item
            fallback = fallback or item
        if fallback is not None:
            return fallback
        orphan = self.orphans[collection].get(item_id)
        return orphan[1] if orphan is not None else None

    def all(self, collection: str) -> list[Item]:
        merged: dict[str, Item] = {}
        for item in self._local_all[collection]():
            item["replica"] = self.node.id
            merged[item["id"]] = item
        for ids in (self.remote[collection], self.orphans[collection]):
            for item_id in ids:
                current = merged.get(item_id)
                if current is None or _gone(current):
                    found = self.get(collection, item_id)
                    if found is not None:
                        merged[item_id] = found
        return list(merged.values())

    def owner(self, collection: str, item_id: str) -> str | None:
        """The other replica holding a live item with this id, if any."""
        for replica, item in self.remote[collection].get(item_id, {}).items():
            if not _gone(item):
                return replica
        return None

    def known(self, collection: str, item_id: str) -> bool:
        return item_id in self.remote[collection] or item_id in self.orphans[collection]

    def remote_models(self) -> dict[str, Item]:
        """Per model, what the other replicas' live workers and jobs add to this one's."""
        if self._models is not None:
            return self._models
        out: dict[str, Item] = {}

        def entry(model: str) -> Item:
            found = out.get(model)
            if found is None:
                found = out[model] = {
                    "workers": 0,
                    "ready_workers": 0,
                    "capacity": 0,
                    "inflight": 0,
                    "owned_by": [],
                }
            return found

        for worker_id, by_replica in self.remote["workers"].items():
            live = next((w for w in by_replica.values() if not _gone(w)), None)
            if live is None or self._local_live(worker_id):
                continue
            for model in live.get("models") or ():
                e = entry(model)
                e["workers"] += 1
                e["owned_by"].append(worker_id)
                if live.get("status") in SERVING:
                    e["ready_workers"] += 1
                    e["capacity"] += int(live.get("max_concurrency") or 0)
        for by_replica in self.remote["jobs"].values():
            for job in by_replica.values():
                if isinstance(job.get("model"), str):
                    entry(job["model"])["inflight"] += 1
        self._models = out
        return out

    def _local_live(self, worker_id: str) -> bool:
        item = self._local_get["workers"](worker_id)
        return item is not None and not _gone(item)

    def replica_load(self) -> dict[str, dict[str, dict[str, int]]]:
        """Per replica, per model: ready capacity and slots in use (for forwarding: asked on
        every chat, so kept until another replica's worker changes)."""
        if self._load is not None:
            return self._load
        load: dict[str, dict[str, dict[str, int]]] = {}
        for by_replica in self.remote["workers"].values():
            for replica, worker in by_replica.items():
                if worker.get("status") not in SERVING:
                    continue
                per_model = load.setdefault(replica, {})
                for model in worker.get("models") or ():
                    slot = per_model.setdefault(model, {"capacity": 0, "inflight": 0})
                    slot["capacity"] += int(worker.get("max_concurrency") or 0)
                    slot["inflight"] += int(worker.get("inflight") or 0)
        self._load = load
        return load
