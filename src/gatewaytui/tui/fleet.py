"""What the panel needs to know about a fleet (docs/cluster.md): whether the gateway it
watches is one replica of several, and how to name the replica that holds a row.

A single-node state has no `replicas` and `server.cluster` is `off`: then nothing here adds
anything, so a single gateway looks exactly as it did before fleets existed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rich.text import Text

from gatewaytui.client.store import StateStore
from gatewaytui.tui.widgets.table_model import Column

REPLICA_COLUMN = "replica"
"""The key of the REPLICA column of Workers, Jobs and MCP (hidden on a single node)."""

NOT_CLUSTERED = (
    "This gateway is not clustered: it is a single node, so it has no replicas to show.\n\n"
    "To run a fleet, give every replica the same Redis with cluster.redis_url "
    "(--cluster-redis-url, CLUSTER_REDIS_URL), e.g. redis://10.0.0.5:6379/0; "
    "see docs/cluster.md. `gatewaytui demo --replicas 3` shows one."
)


def clustered(store: StateStore) -> bool:
    """The state comes from a replica of a fleet (it lists replicas, or says its cluster
    link is `ok` / `degraded`)."""
    if store.items.get("replicas"):
        return True
    return str(store.server.get("cluster") or "off") != "off"


def replica_of(row: Mapping[str, Any]) -> str:
    """The replica holding a worker's, job's or MCP client's connection ('' when none)."""
    return str(row.get("replica") or "")


def stale_elsewhere(server: Mapping[str, Any], row: Mapping[str, Any]) -> bool:
    """The row is held by another replica while this one cannot reach Redis: what it shows is
    the last thing heard, not live (its worker may have drained, gone or come back since)."""
    if server.get("cluster") != "degraded":
        return False
    replica = replica_of(row)
    return bool(replica) and replica != server.get("replica")


def degraded(store: StateStore) -> bool:
    """This replica cannot reach Redis: the other replicas' rows are as last heard."""
    return store.server.get("cluster") == "degraded"


def stale_status(status: str | None) -> Text:
    """`? working`, dim: the last status heard from a replica this one cannot hear now."""
    return Text(f"? {(status or 'unknown').replace('_', ' ')}", "dim italic")


def on_replica(row: Mapping[str, Any], prefix: str = ", on replica ") -> Text:
    """`, on replica r2` for a dialog line (empty on a single node)."""
    replica = replica_of(row)
    return Text.assemble(prefix, (replica, "bold")) if replica else Text()


def replica_column(priority: int = 1) -> Column:
    """REPLICA: which replica holds the row's connection (views hide it on a single node)."""
    return Column(REPLICA_COLUMN, "REPLICA", replica_of, width=10, min_width=7, priority=priority)


@dataclass(frozen=True)
class FleetCounts:
    """What the header adds for a fleet: replicas up of known, the fleet-wide queue, and
    whether this replica lost Redis."""

    ready: int
    replicas: int
    queued: int
    queue_capacity: int
    degraded: bool = False

    def text(self) -> Text:
        """`replicas 3/3 · ` (`▲ degraded` in the warning colour when Redis is down here)."""
        text = Text(f"replicas {self.ready}/{self.replicas}")
        if self.degraded:
            text.append(" ")
            text.append("▲ degraded", "bold yellow")
        text.append(" · ")
        return text


def fleet_counts(store: StateStore) -> FleetCounts | None:
    """The fleet's counts (a scan of the jobs: once a second, not per update); None on a
    single node. The queue is every replica's queued jobs; its capacity this replica's queue
    size times the live replicas (a fleet's replicas run with the same options)."""
    if not clustered(store):
        return None
    replicas = store.items["replicas"].values()
    live = [r for r in replicas if r.get("status") != "gone"]
    ready = sum(1 for r in live if r.get("status") == "ready")
    queued = sum(1 for j in store.jobs.values() if j.get("state") == "queued")
    capacity = (store.server.get("queue") or {}).get("capacity", 0) * max(len(live), 1)
    return FleetCounts(ready, len(replicas), queued, capacity, degraded(store))
