"""Every Redis key and channel the fleet uses, in one place (docs/cluster.md lists them)."""

from __future__ import annotations

PREFIX = "gatewaytui:"

REPLICAS = PREFIX + "replicas"  # set: ids of the registered replicas (pruned when expired)
EPOCH = PREFIX + "epoch"  # a random value set once: gone or changed after a Redis wipe
CHANGES = PREFIX + "changes"  # channel: {"r": replica, "v": version, "c": {...}, "d": {...}}
DRAIN = PREFIX + "drain"  # hash: worker id -> JSON {"since": epoch seconds, "by": replica}
DRAIN_CHANNEL = PREFIX + "drain-changes"  # channel: {"id": worker id, "draining": bool}
EVENTS = PREFIX + "events"  # stream: the fleet's capped event log
BACKENDS = PREFIX + "backends"  # hash: backend id -> JSON stored backend (with revision)
BACKENDS_VERSION = PREFIX + "backends-version"  # counter: bumped by every backend edit;
# missing = Redis never held the fleet's backends (first start) or lost them (restart)
BACKEND_HEALTH = PREFIX + "backend-health"  # hash: backend id -> JSON last shared probe
BACKENDS_CHANNEL = PREFIX + "backend-changes"  # channel: {"id", "kind": spec|health, "by"}
COMMAND_ALL = PREFIX + "cmd:*all*"  # channel: commands for every replica (fleet drain)


def replica(replica_id: str) -> str:
    """String: the replica's summary (JSON), with the replica TTL."""
    return f"{PREFIX}replica:{replica_id}"


def items(replica_id: str, collection: str) -> str:
    """Hash: item id -> JSON of one collection (workers, jobs, mcp_clients) of a replica."""
    return f"{PREFIX}items:{replica_id}:{collection}"


def published(replica_id: str) -> str:
    """String: set with a replica's full publication of its items (same transaction). Missing
    while its hashes may be partial: Redis lost its data and the replica has not yet written
    everything back (readers then add what they find but remove nothing)."""
    return f"{PREFIX}published:{replica_id}"


def commands(replica_id: str) -> str:
    """Channel: actions forwarded to the replica that owns their target."""
    return f"{PREFIX}cmd:{replica_id}"


def replies(replica_id: str) -> str:
    """Channel: answers to the actions this replica forwarded."""
    return f"{PREFIX}reply:{replica_id}"


def probe_lease(backend_id: str, revision: int) -> str:
    """String with a TTL: the replica probing this backend (at this revision: an edit starts
    a new turn at once) until its next probe is due."""
    return f"{PREFIX}probe:{backend_id}@{revision}"
