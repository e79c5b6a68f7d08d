"""This replica's membership in a fleet: registration, the loops that talk to Redis, and the
fleet-wide view plugged into the state hub.

The gateway calls three things: `ClusterNode(gateway)` (no I/O), `start()` and `stop()`. The
node hooks itself in where the parts offer it: the roster's `on_admit` (drain flags), the
live state's `fleet_fields` (the server row), the event log's `on_local` (the fleet stream),
the hub's touch observers (this replica's own changes, to publish).
Everything else attaches to the hub: merged collections (this replica's items plus the
mirror of the others'), the `replicas` collection, and the event log's fleet stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from functools import partial
from typing import TYPE_CHECKING, Any

import gatewaytui
from gatewaytui.gateway.clock import iso
from gatewaytui.gateway.cluster import keys
from gatewaytui.gateway.cluster.actions import FleetActions
from gatewaytui.gateway.cluster.backends import FleetBackends
from gatewaytui.gateway.cluster.commands import CommandBus
from gatewaytui.gateway.cluster.forward import Forwarder
from gatewaytui.gateway.cluster.history import FleetHistory
from gatewaytui.gateway.cluster.link import LINK_ERRORS, RedisDownError, RedisLink, loads
from gatewaytui.gateway.cluster.mirror import MIRRORED, SERVING, FleetMirror, encode
from gatewaytui.gateway.cluster.proxy import OwnerProxy
from gatewaytui.gateway.cluster.shared import DrainFlags, FleetEvents
from gatewaytui.gateway.hub import Collection
from gatewaytui.schema import ModelSummary

if TYPE_CHECKING:
    from gatewaytui.gateway.cluster.host import ClusterHost
    from gatewaytui.gateway.registry import WorkerRecord

log = logging.getLogger("gatewaytui.gateway.cluster")
Item = dict[str, Any]
_LISTEN_ERRORS: tuple[type[BaseException], ...] = (*LINK_ERRORS, RedisDownError)


def default_replica_id(listen: str) -> str:
    """Host name and port: unique per host as long as each replica has its own port."""
    port = listen.rsplit(":", 1)[-1]
    return f"{socket.gethostname()}:{port}"


def default_advertise_url(listen: str) -> str:
    host, _, port = listen.rpartition(":")
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = socket.gethostname()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


class ClusterNode:
    def __init__(self, gateway: ClusterHost) -> None:
        self.gateway = gateway
        self.config = c = gateway.config
        self.id = c.cluster_replica_id or default_replica_id(gateway.listen)
        self.advertise_url = c.cluster_advertise_url or default_advertise_url(gateway.listen)
        self.started_at = time.time()
        self.link = RedisLink(c.cluster_redis_url, c.cluster_redis_timeout, self._link_changed)
        hub = gateway.hub
        self.mirror = FleetMirror(
            self,
            {name: hub.collections[name].get for name in MIRRORED},
            {name: hub.collections[name].all for name in MIRRORED},
        )
        self.drains = DrainFlags(self)
        self.events = FleetEvents(self, c.event_log_size)
        self.actions = FleetActions(self)
        self.commands = CommandBus(self, self.actions.handlers())
        self.forwarder = Forwarder(self)
        self.proxy = OwnerProxy(self)
        self.history = FleetHistory(self)  # the history routes answer for the whole fleet
        gateway.history.replica = self.id  # each ledger record names its replica
        self.backends = FleetBackends(self, gateway.backends)
        self.replicas: dict[str, Item] = {}  # the other live replicas' registrations
        self._seen_at: dict[str, float] = {}  # when each was last found registered
        self.epoch: str | None = None
        self.last_beat: float | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._attach()

    # ---- wiring into the hub --------------------------------------------------------------

    def _attach(self) -> None:
        hub = self.gateway.hub
        for name in MIRRORED:
            hub.collections[name] = Collection(
                partial(self.mirror.get, name), partial(self.mirror.all, name)
            )
        hub.collections["models"] = Collection(self._model_item, self._all_models)
        hub.add_collection("replicas", Collection(self._replica_item, self._all_replicas))
        hub.observe_touches(self._local_touch)
        self.gateway.events.on_local = self.events.on_local
        self.gateway.roster.on_admit = self.worker_registered
        self.gateway.live.fleet_fields = self.server_fields

    def _local_touch(self, collection: str, item_id: str) -> None:
        """Told of this replica's own changes by the hub: queue them for publishing."""
        if collection in MIRRORED:
            self.mirror.mark(collection, item_id)

    def touch(self, collection: str, item_id: str) -> None:
        """A change in the mirror of other replicas (not published again)."""
        self.gateway.hub.touch_view(collection, item_id)

    def remote_changed(self) -> None:
        self.gateway.hub.touch_server()

    def _model_item(self, model: str) -> Item | None:
        local = self.gateway.live.models.get(model)
        extra = self.mirror.remote_models().get(model)
        if extra is None:
            return local
        merged = dict(local) if local is not None else ModelSummary(id=model).model_dump()
        for field in ("workers", "ready_workers", "capacity", "inflight"):
            merged[field] = int(merged.get(field) or 0) + extra[field]
        merged["owned_by"] = [*merged.get("owned_by", ()), *extra["owned_by"]]
        return merged

    def _all_models(self) -> list[Item]:
        ids = dict.fromkeys([*self.gateway.live.models, *self.mirror.remote_models()])
        return [m for m in (self._model_item(i) for i in ids) if m is not None]

    def _replica_item(self, replica: str) -> Item | None:
        if replica == self.id:
            return self.summary(local=True)
        return self.replicas.get(replica)

    def _all_replicas(self) -> list[Item]:
        return [self.summary(local=True), *self.replicas.values()]

    def summary(self, *, local: bool = False) -> Item:
        """This replica as the others see it (and as its own `replicas` entry)."""
        gateway = self.gateway
        workers = capacity = inflight = 0
        for worker in gateway.registry:
            if worker.gone_at is None:
                workers += 1
                if worker.status.value in SERVING:
                    capacity += worker.max_concurrency
                    inflight += worker.inflight
        status, _ = gateway.readiness()
        return {
            "id": self.id,
            "advertise_url": self.advertise_url,
            "status": status.value if self.link.up else "degraded",
            "started_at": iso(self.started_at),
            "last_seen": iso(self.last_beat),
            "workers": workers,
            "jobs": len(gateway.jobs),
            "capacity": capacity,
            "inflight": inflight,
            "draining": gateway.draining,
            "version": gatewaytui.__version__,
            "local": local,
        }

    def server_fields(self) -> Item:
        return {"cluster": "ok" if self.link.up else "degraded", "replica": self.id}

    def worker_registered(self, worker: WorkerRecord) -> None:
        """Apply the fleet's drain flag to a worker being admitted (from the local copy)."""
        draining = self.drains.draining(worker.id)
        if draining is None or draining == worker.counters.draining:
            return
        worker.counters.draining = draining
        flag = self.drains.flags.get(worker.id) or {}
        since = flag.get("since")
        worker.counters.drain_started_at = (
            (float(since) if isinstance(since, int | float) else time.time()) if draining else None
        )

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Join the fleet. Redis being down is no reason not to start: the replica serves its
        own workers (degraded) and catches up when Redis answers."""
        if not self.config.cluster_replica_id:  # the real port is known only now
            self.id = default_replica_id(self.gateway.listen)
            self.gateway.history.replica = self.id
        if not self.config.cluster_advertise_url:
            self.advertise_url = default_advertise_url(self.gateway.listen)
        with contextlib.suppress(RedisDownError):
            await self._beat()
        self._tasks = [
            asyncio.create_task(loop(), name=f"cluster-{loop.__name__}")
            for loop in (
                self._heartbeat_loop,
                self._listen_loop,
                self.mirror.publish_loop,
                self.drains.writer_loop,
                self.events.writer_loop,
                self.events.reader_loop,
                self.backends.run,
            )
        ]
        if not self.link.up:
            self._link_changed(False, "not reachable at start")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks = []
        if self.link.up:  # leave at once rather than after the TTL
            with contextlib.suppress(RedisDownError):

                async def leave(client: Any) -> Any:
                    pipe = client.pipeline(transaction=False)
                    pipe.delete(
                        keys.replica(self.id),
                        keys.published(self.id),
                        *(keys.items(self.id, c) for c in MIRRORED),
                    )
                    pipe.srem(keys.REPLICAS, self.id)
                    return await pipe.execute()

                await self.link.call(leave)
        await self.link.close()
        await self.forwarder.close()
        await self.proxy.close()
        await self.history.close()

    def _link_changed(self, up: bool, reason: str) -> None:
        self.gateway.hub.touch_server()
        self.touch("replicas", self.id)
        events = self.gateway.events
        if up:
            events.add(
                "cluster_ok",
                f"replica {self.id} is in the fleet (Redis at {self.link.where})",
            )
        else:
            events.add(
                "cluster_degraded",
                f"Redis at {self.link.where} is unreachable ({reason}): replica {self.id} "
                "serves its own workers and backends until it returns",
                level="warning",
            )

    # ---- heartbeat and membership ---------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        interval = max(min(self.config.cluster_replica_ttl / 3, 1.0), 0.1)
        while True:
            await asyncio.sleep(interval)
            try:
                await self._beat()
            except RedisDownError:
                pass
            except Exception:
                log.exception("cluster heartbeat failed")

    async def _beat(self) -> None:
        ttl_ms = int(self.config.cluster_replica_ttl * 1000)
        text = encode(self.summary())

        async def register(client: Any) -> Any:
            pipe = client.pipeline(transaction=False)
            pipe.set(keys.replica(self.id), text, px=ttl_ms)
            pipe.sadd(keys.REPLICAS, self.id)
            pipe.smembers(keys.REPLICAS)
            pipe.get(keys.EPOCH)
            for key in (*(keys.items(self.id, c) for c in MIRRORED), keys.published(self.id)):
                pipe.pexpire(key, ttl_ms * 3)
            return await pipe.execute()

        results = await self.link.call(register)
        others = sorted(m for m in results[2] if m != self.id)
        values = (
            await self.link.call(lambda c: c.mget([keys.replica(r) for r in others]))
            if others
            else []
        )
        self.last_beat = time.time()
        recovering = not self.link.up
        if recovering or results[3] != self.epoch:
            await self._catch_up()
        if recovering:  # the outage is no one's silence: give every known replica a TTL
            self._seen_at.update(dict.fromkeys(self.replicas, time.time()))
            self.link.set_up()
        await self._update_replicas(others, values)

    async def _catch_up(self) -> None:
        """After a start or an outage: learn what changed while this replica could not."""
        mine = uuid.uuid4().hex

        async def epoch(client: Any) -> Any:
            pipe = client.pipeline(transaction=False)
            pipe.set(keys.EPOCH, mine, nx=True)
            pipe.get(keys.EPOCH)
            return await pipe.execute()

        current = (await self.link.call(epoch))[1]
        wiped = self.epoch is not None and current != self.epoch
        self.epoch = current
        if wiped:
            self.gateway.events.add(
                "cluster_ok", "Redis lost the fleet's data (restarted?): writing it back"
            )
            await self.drains.reseed()
        await self.drains.load()
        self.mirror.need_full = True
        self.mirror.clear_remote()
        self.mirror.publish_now()
        for replica in list(self.replicas):
            await self.mirror.load_replica(replica)

    async def _update_replicas(self, others: list[str], values: list[Any]) -> None:
        live: dict[str, Item] = {}
        for replica, raw in zip(others, values, strict=True):
            item = loads(raw)
            if isinstance(item, dict):
                item["local"] = False
                live[replica] = item
        now = time.time()
        for replica in live:
            self._seen_at[replica] = now
        ttl = self.config.cluster_replica_ttl
        for replica, item in self.replicas.items():
            # Missing but seen within its TTL (Redis restarted empty, it has not re-registered
            # yet): keep it, or forwarding to its workers would stop for a heartbeat.
            if replica not in live and now - self._seen_at.get(replica, 0.0) <= ttl:
                live[replica] = item
        expired = [r for r in others if r not in live]
        if expired:
            with contextlib.suppress(RedisDownError):
                await self.link.call(lambda c: c.srem(keys.REPLICAS, *expired))
        for replica in set(self.replicas) - set(live):
            self._seen_at.pop(replica, None)
            self.mirror.forget_replica(replica)
            self.gateway.events.add(
                "replica_gone",
                f"replica {replica} left the fleet; its workers show as gone until they "
                "reconnect to another replica",
                level="warning",
            )
            self.touch("replicas", replica)
        joined = [r for r in live if r not in self.replicas]
        for replica, item in live.items():
            if self.replicas.get(replica) != item:
                self.touch("replicas", replica)
        self.replicas = live
        for replica in joined:
            self.gateway.events.add(
                "replica_join",
                f"replica {replica} joined the fleet ({live[replica]['advertise_url']})",
            )
            if replica not in self.mirror.versions:
                with contextlib.suppress(RedisDownError):
                    await self.mirror.load_replica(replica)
        self.mirror.sweep(self.config.gone_retention)
        self.touch("replicas", self.id)

    # ---- pub/sub --------------------------------------------------------------------------

    async def _listen_loop(self) -> None:
        channels = [
            keys.CHANGES,
            keys.commands(self.id),
            keys.replies(self.id),
            keys.DRAIN_CHANNEL,
            keys.BACKENDS_CHANNEL,
            keys.COMMAND_ALL,
        ]
        while True:
            pubsub = self.link.blocking.pubsub(ignore_subscribe_messages=True)
            try:
                async with asyncio.timeout(self.link.timeout):  # no hang on a mute server
                    await pubsub.subscribe(*channels)
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None:
                        await self._dispatch(message["channel"], message["data"])
            except _LISTEN_ERRORS as exc:
                self.link.set_down(exc)
            except Exception:
                log.exception("cluster listener failed")
            finally:
                with contextlib.suppress(BaseException):
                    async with asyncio.timeout(self.link.timeout):
                        await pubsub.aclose()
            self.mirror.clear_remote()  # messages were missed: reload on the next one
            await asyncio.sleep(0.5)

    async def _dispatch(self, channel: str, raw: Any) -> None:
        message = loads(raw)
        if not isinstance(message, dict):
            return
        if channel == keys.CHANGES:
            await self.mirror.on_changes(message)
        elif channel in (keys.commands(self.id), keys.COMMAND_ALL):
            self.commands.on_command(message)
        elif channel == keys.replies(self.id):
            self.commands.on_reply(message)
        elif channel == keys.DRAIN_CHANNEL:
            self.drains.on_message(message)
        elif channel == keys.BACKENDS_CHANNEL:
            self.backends.on_message(message)
