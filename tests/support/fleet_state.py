"""sample_state.json as one replica of a three-replica fleet sees it: the same workers, jobs
and MCP clients spread over gw-1 (the one the panel watches), gw-2 and gw-3, with `replicas`
filled in as the gateway's mirror does (docs/cluster.md). Deterministic, for pilot tests and
SVG snapshots; validated against the schema so it cannot drift from the wire."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gatewaytui.schema.state import GatewayState
from gatewaytui.tui.app import GatewayApp
from gatewaytui.tui.config import TuiConfig
from support.paths import SAMPLE

REPLICAS = ("gw-1", "gw-2", "gw-3")
LOCAL = "gw-1"


def _spread(items: list[dict[str, Any]]) -> None:
    for n, item in enumerate(items):
        item["replica"] = REPLICAS[n % len(REPLICAS)]


def _replica(replica_id: str, state: dict[str, Any]) -> dict[str, Any]:
    workers = [w for w in state["workers"] if w["replica"] == replica_id and w["status"] != "gone"]
    ready = [w for w in workers if w["status"] in ("connected", "idle", "working")]
    n = REPLICAS.index(replica_id)
    return {
        "id": replica_id,
        "advertise_url": f"http://10.0.0.{11 + n}:8080",
        "status": "ready",
        "started_at": f"2026-11-19T06:1{2 + n}:44.318Z",
        "last_seen": f"2026-11-21T09:29:5{9 - n}.500Z",
        "workers": len(workers),
        "jobs": sum(1 for j in state["jobs"] if j["replica"] == replica_id),
        "capacity": sum(w.get("max_concurrency", 0) for w in ready),
        "inflight": sum(w.get("inflight", 0) for w in ready),
        "draining": False,
        "version": state["server"]["version"],
        "local": replica_id == LOCAL,
    }


def fleet_state(*, degraded: bool = False) -> dict[str, Any]:
    """The sample state on gw-1 of a healthy fleet (`degraded`: gw-1 lost Redis)."""
    state = json.loads(SAMPLE.read_text(encoding="utf-8"))
    _spread(state["workers"])
    holder = {w["id"]: w["replica"] for w in state["workers"]}
    for job in state["jobs"]:
        job["replica"] = holder.get(job.get("worker") or "", LOCAL)
    _spread(state["mcp"]["clients"])
    for event in state["events"]:
        event["replica"] = holder.get(event.get("worker_id") or "", LOCAL)
    state["replicas"] = [_replica(r, state) for r in REPLICAS]
    state["server"].update(cluster="degraded" if degraded else "ok", replica=LOCAL)
    if degraded:
        state["replicas"][0]["status"] = "degraded"
    GatewayState.model_validate(state)
    return state


def write_fleet_state(directory: Path, **kwargs: Any) -> Path:
    path = directory / "fleet_state.json"
    path.write_text(json.dumps(fleet_state(**kwargs), indent=1), encoding="utf-8")
    return path


def fleet_app(directory: Path, **kwargs: Any) -> GatewayApp:
    """The panel on the fleet-shaped snapshot (read-only, no gateway), tick stopped."""
    state_kwargs = {k: kwargs.pop(k) for k in ("degraded",) if k in kwargs}
    path = write_fleet_state(directory, **state_kwargs)
    app = GatewayApp(TuiConfig(), snapshot=path, read_only=True, **kwargs)
    app.feed.tick = lambda: None  # type: ignore[method-assign]  # as snapshot_app does
    return app
