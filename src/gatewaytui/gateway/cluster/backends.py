"""The fleet's backends: one copy of the specs in Redis, edited by compare-and-set, and one
probe per backend per interval, shared by every replica.

Specs: the hash `keys.BACKENDS` holds each backend's document with its revision (as the
single node's file does). An edit through any replica is one Lua script that checks the
revision the edit started from and stores the new document, bumps `keys.BACKENDS_VERSION`
and announces the id on `keys.BACKENDS_CHANNEL`, atomically; a lost race is a 409 exactly as
on a single node (BackendManager runs the edit again from the winner's copy). The edit is
acknowledged only after Redis stored it; with Redis unreachable it is refused (503) and
nothing changes anywhere. Every replica applies the change on the announcement, and checks
the version every second, so a missed message heals within a second. A Redis that has no
version key (the fleet's first start, or a restart that lost the data) is seeded from the
replicas' own backends, the higher revision winning. Each replica keeps its backends file as
a copy of the fleet's, which it serves from if it starts while Redis is down.

Probes: before a scheduled probe a replica takes the backend's turn (`keys.probe_lease`,
a key with a TTL until the next probe is due). The holder probes and shares the result in
`keys.BACKEND_HEALTH`; the others adopt it. With Redis unreachable every replica probes for
itself, as a single node does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from gatewaytui.gateway.backends.manager import StaleBackendError
from gatewaytui.gateway.backends.store import BackendStoreError, StoredBackend, stored_from_doc
from gatewaytui.gateway.cluster import keys
from gatewaytui.gateway.cluster.link import RedisDownError, loads
from gatewaytui.gateway.cluster.mirror import encode
from gatewaytui.gateway.jobs import GatewayError
from gatewaytui.schema import BackendStatus

if TYPE_CHECKING:
    from gatewaytui.gateway.backends.manager import BackendManager
    from gatewaytui.gateway.backends.records import BackendRecord
    from gatewaytui.gateway.cluster.host import FleetNode

log = logging.getLogger("gatewaytui.gateway.cluster")

RECONCILE_S = 1.0  # the version check that heals a missed announcement

# KEYS: backends hash, version. ARGV: id, base revision (0: absent), document ('' deletes),
# channel, note. Returns {1, version} stored; {0, current document or ''} stale; {-1} not
# seeded (Redis has no version key: seed first, so an empty Redis never deletes anything).
CAS = """
if redis.call('EXISTS', KEYS[2]) == 0 then return {-1} end
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local rev = 0
if cur then
  local ok, doc = pcall(cjson.decode, cur)
  rev = (ok and type(doc) == 'table' and tonumber(doc['revision'])) or -1
end
if rev ~= tonumber(ARGV[2]) then return {0, cur or ''} end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
local version = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return {1, version}
"""

# KEYS: backends hash, version. ARGV: channel, note, then id, document pairs. Stores each
# document unless Redis holds the same backend at a revision at least as high.
SEED = """
local wrote = 0
for i = 3, #ARGV, 2 do
  local better = true
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  if cur then
    local ok, old = pcall(cjson.decode, cur)
    local _, new = pcall(cjson.decode, ARGV[i + 1])
    better = not ok or type(old) ~= 'table'
      or (tonumber(new['revision']) or 0) > (tonumber(old['revision']) or 0)
  end
  if better then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    wrote = wrote + 1
  end
end
if wrote > 0 or redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('INCR', KEYS[2])
  redis.call('PUBLISH', ARGV[1], ARGV[2])
end
return wrote
"""

# KEYS: lease. ARGV: replica, ttl ms. -1: this replica holds the turn; else ms left.
CLAIM = """
local cur = redis.call('GET', KEYS[1])
if not cur or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return -1
end
return redis.call('PTTL', KEYS[1])
"""

HEALTH_FIELDS = (
    "latency_ms",
    "last_probe_at",
    "last_ok_at",
    "last_error",
    "consecutive_failures",
    "out",
    "next_retry_at",
)


_GET_VERSION = ("get", keys.BACKENDS_VERSION)


async def _pipeline(client: Any, *calls: tuple[str, ...]) -> list[Any]:
    """Several reads in one round trip (not a transaction: each is one atomic command)."""
    pipe = client.pipeline(transaction=False)
    for name, *args in calls:
        getattr(pipe, name)(*args)
    return list(await pipe.execute())


def unavailable(message: str) -> GatewayError:
    return GatewayError(message, status=503, code="cluster_unavailable")


class FleetBackends:
    """Plugs into the BackendManager (`shared`) and its health (`shared`) of one replica."""

    def __init__(self, node: FleetNode, manager: BackendManager) -> None:
        self.node = node
        self.link = node.link
        self.manager = manager
        self.version: str | None = None  # the fleet version last applied here
        self.seeded = 0  # documents this replica wrote into an empty Redis
        self.probes = 0  # probes this replica ran for the fleet (tests, bench)
        self._wake = asyncio.Event()
        self._health_due: set[str] = set()
        self._copy_due = False
        self._tasks: set[asyncio.Task[Any]] = set()
        client = self.link.client
        self._cas = client.register_script(CAS)
        self._seed_script = client.register_script(SEED)
        self._claim = client.register_script(CLAIM)
        manager.shared = self
        manager.health.shared = self

    # ---- the shared store (SharedBackendStore) --------------------------------------------

    def _require_link(self) -> None:
        if not self.link.up:
            raise unavailable(
                f"backends are kept in Redis ({self.link.where}), which is unreachable: the "
                "edit was not made; try again when Redis is back (every replica keeps "
                "serving the backends it has)"
            )

    def _note(self, kind: str, backend_id: str = "") -> str:
        return encode({"id": backend_id, "kind": kind, "by": self.node.id})

    def _parse(self, backend_id: str, raw: Any) -> StoredBackend | None:
        """A document from Redis; BackendStoreError if it is not a valid backend."""
        if raw is None or raw == "":
            return None
        where = f"redis {keys.BACKENDS}[{backend_id}]"
        doc = loads(raw)
        stored = stored_from_doc(doc, where)
        if stored.spec.id != backend_id:
            raise BackendStoreError(f"{where}: holds backend {stored.spec.id!r}")
        return stored

    async def read(self, backend_id: str) -> StoredBackend | None:
        self._require_link()
        try:
            raw, version = await self.link.call(
                lambda c: _pipeline(c, ("hget", keys.BACKENDS, backend_id), _GET_VERSION)
            )
            if version is None:  # Redis does not hold the fleet's backends: seed it first
                await self.seed()
                raw = await self.link.call(lambda c: c.hget(keys.BACKENDS, backend_id))
        except RedisDownError as exc:
            raise unavailable(
                f"Redis ({self.link.where}) did not answer ({exc}): the edit was not made"
            ) from None
        try:
            return self._parse(backend_id, raw)
        except BackendStoreError as exc:
            raise GatewayError(f"the fleet's copy is unusable: {exc}", code="store_error") from None

    async def write(self, backend_id: str, base: int, stored: StoredBackend | None) -> None:
        self._require_link()
        doc = encode(stored.to_doc()) if stored is not None else ""
        args: list[str | int] = [
            backend_id,
            base,
            doc,
            keys.BACKENDS_CHANNEL,
            self._note("spec", backend_id),
        ]
        names = [keys.BACKENDS, keys.BACKENDS_VERSION]
        try:
            result: Any = await self.link.call(lambda c: self._cas(keys=names, args=args, client=c))
        except RedisDownError as exc:
            raise unavailable(
                f"Redis ({self.link.where}) did not acknowledge the edit ({exc}): it may or "
                "may not have been stored; reload the backend before trying again"
            ) from None
        status = int(result[0])
        if status == -1:
            raise StaleBackendError(backend_id, await self.read(backend_id))  # read seeds
        if status == 0:
            try:
                current = self._parse(backend_id, result[1])
            except BackendStoreError:
                current = None
            raise StaleBackendError(backend_id, current)
        self.applied()

    def applied(self) -> None:
        self._copy_due = True
        self._wake.set()

    async def seed(self) -> int:
        """Put this replica's backends into a Redis that has none (or older revisions)."""
        pairs: list[str] = []
        for record in self.manager.records.values():
            pairs += [record.spec.id, encode(record.stored().to_doc())]
        wrote = int(
            await self.link.call(
                lambda c: self._seed_script(
                    keys=[keys.BACKENDS, keys.BACKENDS_VERSION],
                    args=[keys.BACKENDS_CHANNEL, self._note("spec"), *pairs],
                    client=c,
                )
            )
        )
        if wrote:
            self.seeded += wrote
            self.node.gateway.events.add(
                "backend_seed",
                f"Redis held no copy of {wrote} of this replica's backends (first start of "
                "the fleet, or Redis lost its data): wrote them",
            )
        return wrote

    # ---- keeping this replica in line ------------------------------------------------------

    def on_message(self, message: dict[str, Any]) -> None:
        """An announcement on `keys.BACKENDS_CHANNEL` (from the listener)."""
        if message.get("by") == self.node.id:
            return
        if message.get("kind") == "health" and isinstance(message.get("id"), str):
            self._health_due.add(message["id"])
        self._wake.set()

    async def run(self) -> None:
        """Apply the fleet's changes when announced, and check the version every second."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), RECONCILE_S)
            self._wake.clear()
            await self.link.up_event.wait()
            try:
                await self.reconcile()
                await self._adopt_due()
            except RedisDownError:
                continue
            except Exception:
                log.exception("fleet backends: reconcile failed")
            if self._copy_due:
                self._copy_due = False
                await self._write_copy()

    async def reconcile(self) -> None:
        version = await self.link.call(lambda c: c.get(keys.BACKENDS_VERSION))
        if version is None:
            async with self.manager.lock:
                await self.seed()
            version = ""  # reload whatever Redis holds now
        if version == self.version:
            return
        async with self.manager.lock:
            version, docs = await self.link.call(
                lambda c: _pipeline(c, _GET_VERSION, ("hgetall", keys.BACKENDS))
            )
            self._apply_all(docs)
            self.version = version

    def _apply_all(self, docs: dict[str, str]) -> None:
        manager = self.manager
        for backend_id, raw in docs.items():
            try:
                stored = self._parse(backend_id, raw)
            except BackendStoreError as exc:
                log.warning("fleet backends: kept this replica's copy: %s", exc)
                continue
            manager.apply_stored(backend_id, stored, announce=False)
        for backend_id in [i for i in manager.records if i not in docs]:
            manager.apply_stored(backend_id, None, announce=False)

    async def _write_copy(self) -> None:
        entries = [record.stored() for record in self.manager.records.values()]
        store = self.manager.store
        try:
            await asyncio.to_thread(store.save_copy, entries)
        except OSError as exc:
            log.warning("fleet backends: could not write the copy in %s: %s", store.path, exc)

    # ---- shared probes (SharedProbes) ------------------------------------------------------

    async def claim(self, record: BackendRecord) -> float | None:
        if not self.link.up:
            return None  # every replica probes for itself meanwhile
        spec = record.spec
        ttl_ms = max(int(self.manager.health.interval * 1000), 100)
        lease = keys.probe_lease(spec.id, record.revision)
        try:
            left = int(
                await self.link.call(
                    lambda c: self._claim(keys=[lease], args=[self.node.id, ttl_ms], client=c)
                )
            )
            if left < 0:
                self.probes += 1
                return None
            raw = await self.link.call(lambda c: c.hget(keys.BACKEND_HEALTH, spec.id))
        except RedisDownError:
            return None
        self.adopt(record, loads(raw))
        return max(left, 50) / 1000 + 0.05

    def share(self, record: BackendRecord) -> None:
        if not self.link.up:
            return
        spec = record.spec
        doc = {name: getattr(record, name) for name in HEALTH_FIELDS}
        doc.update(
            revision=record.revision,
            status=record.status.value,
            discovered=list(record.discovered),
            by=self.node.id,
        )
        text = encode(doc)
        lease = keys.probe_lease(spec.id, record.revision)
        turn_ms = max(int((record.next_probe_at - time.time()) * 1000), 100)
        note = self._note("health", spec.id)

        async def run(client: Any) -> Any:
            pipe = client.pipeline(transaction=False)
            pipe.hset(keys.BACKEND_HEALTH, spec.id, text)
            pipe.set(lease, self.node.id, px=turn_ms)  # the turn lasts until the next probe
            pipe.publish(keys.BACKENDS_CHANNEL, note)
            return await pipe.execute()

        async def send() -> None:
            with contextlib.suppress(RedisDownError):
                await self.link.call(run)

        task = asyncio.get_running_loop().create_task(send())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _adopt_due(self) -> None:
        due, self._health_due = list(self._health_due), set()
        if not due:
            return
        values = await self.link.call(lambda c: c.hmget(keys.BACKEND_HEALTH, due))
        for backend_id, raw in zip(due, values, strict=True):
            record = self.manager.records.get(backend_id)
            if record is not None:
                self.adopt(record, loads(raw))

    def adopt(self, record: BackendRecord, doc: Any) -> None:
        """Take another replica's probe result for this backend (same revision only)."""
        if not isinstance(doc, dict) or doc.get("revision") != record.revision or record.deleted:
            return
        try:
            status = BackendStatus(str(doc.get("status")))
        except ValueError:
            return
        for name in HEALTH_FIELDS:
            if name in doc:
                setattr(record, name, doc[name])
        record.status = status
        discovered = doc.get("discovered")
        if isinstance(discovered, list) and discovered != record.discovered:
            record.discovered = [m for m in discovered if isinstance(m, str)]
        self.manager.health.sync(record)
