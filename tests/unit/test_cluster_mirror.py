"""The fleet mirror's reload rule (fakeredis: the logic, not the server): a replica's items
are removed on reload only when its full publication is there, so a Redis restart that left
its hashes empty does not drop its live workers from the others' view."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import fakeredis.aioredis

from gatewaytui.gateway.cluster import keys
from gatewaytui.gateway.cluster.mirror import FleetMirror


class _Link:
    def __init__(self, client: Any) -> None:
        self.client = client
        self.up = True

    async def call(self, run: Any) -> Any:
        return await run(self.client)


def _mirror(client: Any) -> tuple[FleetMirror, list[tuple[str, str]]]:
    touched: list[tuple[str, str]] = []
    node = SimpleNamespace(
        id="r1",
        link=_Link(client),
        config=SimpleNamespace(cluster_replica_ttl=2.0, cluster_publish_rate=10),
        touch=lambda collection, item_id: touched.append((collection, item_id)),
        remote_changed=lambda: None,
    )
    empty: dict[str, Any] = {"workers": {}, "jobs": {}, "mcp_clients": {}}
    mirror = FleetMirror(
        node,  # type: ignore[arg-type]
        {c: (lambda _id: None) for c in empty},
        {c: (lambda: []) for c in empty},
    )
    return mirror, touched


def _worker(worker_id: str) -> str:
    return json.dumps({"id": worker_id, "status": "idle", "models": ["m"], "max_concurrency": 2})


async def test_reload_removes_only_after_the_owners_full_publication() -> None:
    client = fakeredis.aioredis.FakeRedis(decode_responses=True)
    mirror, _ = _mirror(client)
    await client.hset(keys.items("r2", "workers"), mapping={"w2": _worker("w2")})
    await client.set(keys.published("r2"), "1")
    await mirror.load_replica("r2")
    assert mirror.owner("workers", "w2") == "r2"
    assert mirror.replica_load()["r2"]["m"] == {"capacity": 2, "inflight": 0}

    await client.flushall()  # Redis restarted empty; r2 has not written its items back yet
    await mirror.load_replica("r2")
    assert mirror.owner("workers", "w2") == "r2"  # still routable: nothing was removed
    await client.hset(keys.items("r2", "workers"), mapping={"w3": _worker("w3")})
    await mirror.load_replica("r2")  # a partial hash (a delta): additions only
    assert mirror.owner("workers", "w2") == "r2" and mirror.owner("workers", "w3") == "r2"

    await client.set(keys.published("r2"), "2")  # r2's full publication: w2 really left
    await mirror.load_replica("r2")
    assert mirror.owner("workers", "w2") is None and mirror.owner("workers", "w3") == "r2"
    assert "m" in mirror.replica_load()["r2"]  # the load cache followed the changes
    await client.aclose()


async def test_publish_skips_a_job_that_came_and_went_between_publications() -> None:
    client = fakeredis.aioredis.FakeRedis(decode_responses=True)
    jobs: dict[str, dict[str, Any]] = {"j1": {"id": "j1", "model": "m"}}
    mirror, _ = _mirror(client)
    mirror._local_get["jobs"] = lambda job_id: dict(jobs[job_id]) if job_id in jobs else None
    mirror.mark("jobs", "j1")
    mirror.mark("jobs", "j0")  # created and ended before this publication: not written
    await mirror.publish()
    assert await client.hkeys(keys.items("r1", "jobs")) == ["j1"] and mirror.version == 1
    del jobs["j1"]
    mirror.mark("jobs", "j1")  # written before: deleted and announced
    await mirror.publish()
    assert await client.hkeys(keys.items("r1", "jobs")) == [] and mirror.version == 2
    mirror.mark("jobs", "j9")  # came and went: no write, no delete, no announcement
    await mirror.publish()
    assert mirror.version == 2
    await client.aclose()
