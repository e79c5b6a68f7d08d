"""A small MCP server built with the official `mcp` SDK, for tests and trying the relay.

`python tests/support/mcp_demo_server.py` serves it over stdio (what `gatewaytui mcp-relay -- …`
starts); `build_server()` gives the same server for its Streamable HTTP app.
"""

from __future__ import annotations

import os
import sys

import anyio
from mcp.server.mcpserver import Context, MCPServer


def build_server() -> MCPServer:
    server = MCPServer("demo-tools", title="Demo Tools", version="1.2.3")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    @server.tool()
    async def hold(seconds: float = 60.0) -> str:
        """Stay busy for a while (a call that is still in flight when a test acts)."""
        await anyio.sleep(seconds)
        return "held"

    @server.tool()
    async def count(n: int, ctx: Context) -> str:
        """Report progress n times, then answer (a streamed answer)."""
        for i in range(n):
            await ctx.report_progress(i + 1, n, f"step {i + 1}")
        return f"counted to {n}"

    @server.tool()
    def big(size: int) -> str:
        """A large answer, for response size limits."""
        return "x" * size

    @server.tool()
    def pid() -> int:
        """The server process id."""
        return os.getpid()

    @server.tool()
    def getenv(name: str) -> str:
        """An environment variable of the server process ("" when unset)."""
        return os.environ.get(name, "")

    @server.tool()
    def crash(code: int = 3) -> str:
        """Exit the server process at once, mid-call."""
        os._exit(code)

    @server.resource("demo://hello", name="hello")
    def hello() -> str:
        return "hello from demo-tools"

    @server.prompt()
    def greet(name: str) -> str:
        return f"Say hello to {name}."

    return server


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(f"usage: {sys.argv[0]} (serves MCP over stdio)")
    build_server().run("stdio")
