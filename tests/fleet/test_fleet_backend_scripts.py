"""The Lua scripts behind the fleet's backends, run on a real redis-server (fakeredis has no
Lua without lupa): compare-and-set on the revision, seeding where the higher revision wins,
and the probe turn."""

from __future__ import annotations

import json
import time

import redis as redis_sync

from gatewaytui.gateway.cluster import keys
from gatewaytui.gateway.cluster.backends import CAS, CLAIM, SEED
from support.fleet import RedisServer

NAMES = [keys.BACKENDS, keys.BACKENDS_VERSION]


def _doc(backend_id: str, revision: int, url: str = "http://up/v1") -> str:
    return json.dumps({"id": backend_id, "revision": revision, "url": url})


def test_compare_and_set_needs_a_seeded_store_and_the_revision_it_started_from(
    redis: RedisServer,
) -> None:
    client = redis_sync.Redis.from_url(redis.url, decode_responses=True)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(keys.BACKENDS_CHANNEL)
        cas = client.register_script(CAS)
        seed = client.register_script(SEED)

        def write(backend_id: str, base: int, doc: str) -> list[object]:
            args = [backend_id, base, doc, keys.BACKENDS_CHANNEL, "note"]
            return list(cas(keys=NAMES, args=args))

        # Not seeded (first start, or Redis lost its data): nothing is written, not even a
        # create, so an empty Redis can never make a replica drop its backends.
        assert write("a", 0, _doc("a", 1)) == [-1]
        assert seed(keys=NAMES, args=[keys.BACKENDS_CHANNEL, "seeded"]) == 0
        assert client.get(keys.BACKENDS_VERSION) == "1"  # seeded, with no backends

        assert write("a", 0, _doc("a", 1)) == [1, 2]  # create: absent is revision 0
        assert write("a", 0, _doc("a", 1, "http://other/v1")) == [0, _doc("a", 1)]  # exists
        assert write("a", 1, _doc("a", 2)) == [1, 3]
        assert write("a", 1, _doc("a", 2, "http://late/v1")) == [0, _doc("a", 2)]  # 409
        assert write("a", 2, "") == [1, 4]  # delete at the current revision
        assert client.hget(keys.BACKENDS, "a") is None
        assert write("a", 2, _doc("a", 3)) == [0, ""]  # gone: the stale copy learns it
        client.hset(keys.BACKENDS, "broken", "not json")
        assert write("broken", 1, _doc("broken", 2))[0] == 0  # never over a broken value
        notes: list[str] = []
        deadline = time.monotonic() + 5
        while len(notes) < 4 and time.monotonic() < deadline:  # bounded: all were sent
            message = pubsub.get_message(timeout=0.5)  # None also for the subscribe reply
            if message is not None:
                notes.append(message["data"])
        assert notes == ["seeded", "note", "note", "note"]  # one per stored change
        assert pubsub.get_message(timeout=0.2) is None  # and no more
    finally:
        pubsub.close()
        client.close()


def test_seeding_keeps_the_higher_revision_of_each_backend(redis: RedisServer) -> None:
    client = redis_sync.Redis.from_url(redis.url, decode_responses=True)
    try:
        seed = client.register_script(SEED)
        channel = keys.BACKENDS_CHANNEL
        first = [channel, "n", "a", _doc("a", 3), "b", _doc("b", 1)]
        assert seed(keys=NAMES, args=first) == 2
        # A second replica writes back what it knows: older copies lose, newer ones win,
        # backends Redis lacks are added.
        second = [channel, "n", "a", _doc("a", 2, "old"), "b", _doc("b", 4), "c", _doc("c", 1)]
        assert seed(keys=NAMES, args=second) == 2
        stored = {k: json.loads(v) for k, v in client.hgetall(keys.BACKENDS).items()}
        assert {k: v["revision"] for k, v in stored.items()} == {"a": 3, "b": 4, "c": 1}
        assert stored["a"]["url"] == "http://up/v1"
        assert client.get(keys.BACKENDS_VERSION) == "2"
        assert seed(keys=NAMES, args=second) == 0  # nothing newer: no version bump
        assert client.get(keys.BACKENDS_VERSION) == "2"
    finally:
        client.close()


def test_one_replica_holds_a_probe_turn_until_it_ends(redis: RedisServer) -> None:
    client = redis_sync.Redis.from_url(redis.url, decode_responses=True)
    try:
        claim = client.register_script(CLAIM)
        lease = keys.probe_lease("a", 1)
        assert claim(keys=[lease], args=["r1", 60_000]) == -1  # r1 probes
        left = claim(keys=[lease], args=["r2", 60_000])
        assert 0 < left <= 60_000  # r2 waits for r1's turn to end
        assert claim(keys=[lease], args=["r1", 60_000]) == -1  # the holder keeps it
        assert claim(keys=[keys.probe_lease("a", 2)], args=["r2", 60_000]) == -1  # an edit
        client.delete(lease)  # the turn ended (its TTL)
        assert claim(keys=[lease], args=["r2", 60_000]) == -1
    finally:
        client.close()
