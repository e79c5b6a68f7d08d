"""Operator actions in a fleet: run here when this replica owns the target, else forward
them to the owner (`CommandBus`) and answer with its result.

A worker's owner is the replica holding its live connection; a job's, the replica running
it. 404 when no replica owns the id; 409 when the only record is a gone one (as on a single
node); drain flags go to Redis so they follow the worker wherever it reconnects.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from gatewaytui.gateway.cluster.commands import Handler
from gatewaytui.gateway.jobs import GatewayError
from gatewaytui.schema.api import ActionResult
from gatewaytui.shared.text import plural

if TYPE_CHECKING:
    from gatewaytui.gateway.cluster.host import FleetNode


class FleetActions:
    def __init__(self, node: FleetNode) -> None:
        self.node = node

    def handlers(self) -> dict[str, Handler]:
        """What other replicas may ask this one to do (the command bus runs these)."""
        return {
            "drain_worker": self.local_drain_worker,
            "undrain_worker": self.local_undrain_worker,
            "cancel_job": self.local_cancel_job,
            "drain_server": self.local_drain_server,
            "undrain_server": self.local_undrain_server,
            "disconnect_mcp_client": self.local_disconnect_mcp_client,
        }

    # ---- here -----------------------------------------------------------------------------

    def _here(self, outcome: ActionResult) -> dict[str, Any]:
        """The action's answer (as on a single node) saying which replica ran it."""
        outcome.details["replica"] = self.node.id
        return outcome.model_dump()

    async def local_drain_worker(self, worker_id: str) -> dict[str, Any]:
        outcome = self.node.gateway.drain_worker(worker_id)
        self.node.drains.set(worker_id, True)
        return self._here(outcome)

    async def local_undrain_worker(self, worker_id: str) -> dict[str, Any]:
        outcome = self.node.gateway.undrain_worker(worker_id)
        self.node.drains.set(worker_id, False)
        return self._here(outcome)

    async def local_cancel_job(self, job_id: str) -> dict[str, Any]:
        return self._here(self.node.gateway.cancel_job(job_id))

    async def local_disconnect_mcp_client(self, client_id: str) -> dict[str, Any]:
        return self._here(await self.node.gateway.mcp.disconnect(client_id))

    async def local_drain_server(
        self, timeout_s: float | None = None, exit_when_done: bool = False
    ) -> dict[str, Any]:
        outcome = self.node.gateway.drain_server(timeout_s, exit_when_done=exit_when_done)
        return self._here(outcome)

    async def local_undrain_server(self) -> dict[str, Any]:
        return self._here(self.node.gateway.undrain_server())

    # ---- anywhere in the fleet ------------------------------------------------------------

    async def worker_action(self, action: str, worker_id: str) -> dict[str, Any]:
        gateway, mirror = self.node.gateway, self.node.mirror
        local = gateway.registry.get(worker_id)
        here = self.handlers()[action]
        if local is not None and local.gone_at is None:
            return await here(worker_id=worker_id)
        owner = mirror.owner("workers", worker_id)
        if owner is not None:
            return await self.node.commands.request(owner, action, {"worker_id": worker_id})
        if local is None and mirror.known("workers", worker_id):
            raise GatewayError(
                f"worker {worker_id!r} is gone; it rejoins when it reconnects to a replica",
                status=409,
                code="conflict",
            )
        return await here(worker_id=worker_id)  # gone here (409) or unknown (404), as ever

    async def mcp_client_action(self, action: str, client_id: str) -> dict[str, Any]:
        """An action on an MCP client (its relay): run by the replica it is connected to."""
        relay = self.node.gateway.mcp.relays.get(client_id)
        here = self.handlers()[action]
        if relay is not None and relay.gone_at is None:
            return await here(client_id=client_id)
        owner = self.node.mirror.owner("mcp_clients", client_id)
        if owner is not None:
            return await self.node.commands.request(owner, action, {"client_id": client_id})
        return await here(client_id=client_id)  # gone here (409) or unknown (404)

    async def cancel_job(self, job_id: str) -> dict[str, Any]:
        if job_id not in self.node.gateway.jobs:
            owner = self.node.mirror.owner("jobs", job_id)
            if owner is not None:
                return await self.node.commands.request(owner, "cancel_job", {"job_id": job_id})
        return await self.local_cancel_job(job_id)

    async def server_action(
        self, action: str, scope: str, replica: str | None, args: dict[str, Any]
    ) -> dict[str, Any]:
        """Drain or undrain one replica (this one by default) or every live one."""
        here = self.handlers()[action]
        if scope == "fleet":
            return await self._fleet(action, args)
        if replica is None or replica == self.node.id:
            return await here(**args)
        if replica not in self.node.replicas:
            raise GatewayError(f"no live replica with id {replica!r}", status=404, code="not_found")
        return await self.node.commands.request(replica, action, args)

    async def _fleet(self, action: str, args: dict[str, Any]) -> dict[str, Any]:
        others = sorted(self.node.replicas)
        here = self.handlers()[action]

        async def one(replica: str) -> dict[str, Any]:
            try:
                if replica == self.node.id:
                    return {"ok": True, **(await here(**args))}
                return {"ok": True, **(await self.node.commands.request(replica, action, args))}
            except GatewayError as exc:
                return {"ok": False, "status": exc.status, "message": exc.message}

        ids = [self.node.id, *others]
        results = await asyncio.gather(*(one(r) for r in ids))
        by_replica = dict(zip(ids, results, strict=True))
        done = sum(1 for r in results if r["ok"])
        verb = "draining" if action == "drain_server" else "accepting requests again"
        message = f"fleet {verb}: {done} of {plural(len(ids), 'replica')}"
        failed = [r for r, result in by_replica.items() if not result["ok"]]
        if failed:
            message += f" (failed on {', '.join(failed)})"
        return ActionResult(
            message=message, target="fleet", details={"replicas": by_replica}
        ).model_dump()
