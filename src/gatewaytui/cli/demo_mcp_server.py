"""The demo's MCP server, built with the official `mcp` SDK and served over stdio: an ops
toolbox (runbook search, incident lookup, a slow log summary that reports progress) that
`gatewaytui demo` puts behind an MCP relay so the MCP view has a real server to show.

`python -m gatewaytui.cli.demo_mcp_server` runs it; it needs the `mcp` package (the README's
install brings it).
"""

# No `from __future__ import annotations`: the SDK reads the tools' annotations at runtime,
# and `Context` is imported inside build_server.
import hashlib
import sys
from typing import Any

from gatewaytui.shared.text import plural

RUNBOOKS = {
    "drain-a-worker": "Drain from the panel (d), wait for in-flight to reach 0, then stop it.",
    "re-add-a-worker": "Start the worker, check it registers, undrain it (u) if drained.",
    "queue-growing": "Check models with no ready worker; add capacity or a backend.",
    "backend-unhealthy": "Probe it (view 6, p); read last_error; fix the URL or key.",
    "rotate-worker-key": "Set the new key on the gateway, then restart workers one by one.",
}


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def build_server() -> Any:
    """The server; `mcp` is imported here so this module loads without it."""
    import anyio
    from mcp.server.mcpserver import Context, MCPServer

    server = MCPServer("ops-toolbox", title="Ops toolbox", version="0.4.2")

    @server.tool()
    def search_runbooks(query: str, limit: int = 3) -> list[str]:
        """Runbooks whose name or text mention the query."""
        words = query.lower().split()
        hits = [
            name
            for name, text in RUNBOOKS.items()
            if any(w in name or w in text.lower() for w in words)
        ]
        return hits[: max(0, limit)]

    @server.tool()
    def get_incident(incident_id: str) -> dict[str, Any]:
        """An incident's summary (made up, but the same for the same id)."""
        n = _digest(incident_id)
        return {
            "id": incident_id,
            "severity": ("sev1", "sev2", "sev3")[n % 3],
            "status": ("open", "mitigated", "resolved")[n // 3 % 3],
            "affected_models": n % 4 + 1,
        }

    @server.tool()
    async def summarise_logs(service: str, minutes: int, ctx: Context) -> str:
        """Read a service's recent logs and summarise them (slow: it reports progress)."""
        steps = 4
        for step in range(steps):
            await anyio.sleep(0.3 + (_digest(f"{service}{step}") % 100) / 100)
            await ctx.report_progress(step + 1, steps, f"read {(step + 1) * minutes // steps} min")
        errors = _digest(service) % 17
        return f"{service}: {plural(errors, 'error')} in the last {minutes} min"

    @server.resource("runbook://index", name="runbooks")
    def runbook_index() -> str:
        return "\n".join(RUNBOOKS)

    @server.prompt()
    def postmortem(incident_id: str) -> str:
        return f"Draft a blameless postmortem for incident {incident_id}."

    return server


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(f"usage: {sys.argv[0]} (serves MCP over stdio)")
    build_server().run("stdio")
