"""Real peers for MCP relay tests: the shipped relay (in-process or as the CLI), a demo MCP
server built with the official `mcp` SDK (stdio script or Streamable HTTP app), and the SDK's
own Streamable HTTP client."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from gatewaytui.gateway.server import bind_socket
from gatewaytui.workers.mcp_relay import MCPRelaySettings, run_mcp_relay
from gatewaytui.workers.settings import BackoffSettings
from support.gateway_harness import RunningGateway
from support.waiting import uvicorn_started_blocking

DEMO_SERVER = Path(__file__).parent / "mcp_demo_server.py"
STDIO_COMMAND = [sys.executable, str(DEMO_SERVER)]
FAST_BACKOFF = BackoffSettings(base_s=0.05, cap_s=0.3, stable_after_s=0.5)


def relay_settings(gw: RunningGateway, relay_id: str = "demo", **extra: Any) -> MCPRelaySettings:
    """A relay for `gw` that bridges the demo server over stdio unless `url=` is given."""
    if "url" not in extra and "command" not in extra:
        extra["command"] = STDIO_COMMAND
    extra.setdefault("drain_timeout_s", 2)
    return MCPRelaySettings(gateway_url=gw.ws_url, id=relay_id, backoff=FAST_BACKOFF, **extra)


class InProcessRelay:
    """The shipped relay (`run_mcp_relay`) on the gateway's loop, over a real socket."""

    def __init__(self, gw: RunningGateway, settings: MCPRelaySettings, *, wait_ready: bool = True):
        self.gw = gw
        self.id = settings.id
        self._stop: asyncio.Event = gw.call(_make_event)
        self.run = gw.spawn(run_mcp_relay(settings, self._stop))
        if wait_ready:
            gw.wait_for(lambda g: _relay_status(g, self.id) in ("idle", "working"), timeout=20)

    def request_stop(self) -> None:
        """What the first SIGTERM does: the relay drains, then exits."""
        self.gw.loop.call_soon_threadsafe(self._stop.set)

    def stop(self) -> int:
        if not self.run.done():
            self.request_stop()
        return self.run.result(30)


async def _make_event() -> asyncio.Event:
    return asyncio.Event()


def _relay_status(gateway: Any, relay_id: str) -> str | None:
    relay = gateway.mcp.relays.get(relay_id)
    return relay.status if relay is not None else None


class CliRelay:
    """`gatewaytui mcp-relay` as a separate process (to be killed like a real one)."""

    def __init__(self, gw: RunningGateway, relay_id: str, *args: str, key: str = "") -> None:
        env = {"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}
        if key:
            env["GATEWAYTUI_WORKER_KEY"] = key
        self.log = b""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gatewaytui.cli.main", "mcp-relay", "--gateway", gw.url,
             "--id", relay_id, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )  # fmt: skip

    def read_log_until(self, pattern: str, timeout: float = 20) -> re.Match[str]:
        """Read the relay's log (stderr) until a line matches `pattern`."""
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.log += line
            match = re.search(pattern, line.decode(errors="replace"))
            if match:
                return match
        raise AssertionError(f"relay log never matched {pattern!r}:\n{self.log.decode()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


class HttpMcpServer:
    """The demo server's Streamable HTTP app under uvicorn on the gateway's loop; records the
    HTTP method and `mcp-session-id` of every request it gets."""

    def __init__(self, gw: RunningGateway) -> None:
        from support.mcp_demo_server import build_server

        self.gw = gw
        self.requests: list[tuple[str, str | None]] = []
        app = build_server().streamable_http_app()

        async def recording(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                headers = dict(scope.get("headers") or [])
                session = headers.get(b"mcp-session-id")
                self.requests.append((scope["method"], session.decode() if session else None))
            await app(scope, receive, send)

        self.sock = bind_socket("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/mcp"
        config = uvicorn.Config(recording, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self._serve = gw.spawn(self.server.serve(sockets=[self.sock]))
        uvicorn_started_blocking(self.server, self._serve)

    def stop(self) -> None:
        self.server.should_exit = True
        self._serve.result(10)
        self.sock.close()


@asynccontextmanager
async def mcp_client(
    gw: RunningGateway, client_id: str = "demo", headers: dict[str, str] | None = None
) -> AsyncIterator[ClientSession]:
    """The official SDK's Streamable HTTP client, pointed at the gateway's `/mcp/{id}`."""
    url = f"{gw.url}/mcp/{client_id}"
    async with (
        create_mcp_http_client(headers=headers) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        yield session
