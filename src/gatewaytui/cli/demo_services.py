"""What the demo runs besides the worker fleet, so the Backends and MCP views have real things
to show: a simulated OpenAI-compatible server registered as a backend (plus one that is down,
as an operator would meet it), and the demo MCP server behind an MCP relay, with a trickle of
MCP calls made by the official SDK.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import random
import sys
from dataclasses import dataclass

import httpx
import uvicorn

from gatewaytui.gateway.server import EmbeddableServer, bind_socket, serve_started
from gatewaytui.shared.operator_token import local_token
from gatewaytui.workers.mcp_relay import MCPRelaySettings, run_mcp_relay
from gatewaytui.workers.openai_sim import openai_app
from gatewaytui.workers.settings import SimulateSettings
from gatewaytui.workers.simulated import SimulatedHandler

log = logging.getLogger("gatewaytui.demo")

BACKEND_MODEL = "mistral-small-24b-instruct"
MCP_RELAY_ID = "ops-toolbox"


@dataclass
class RunningServer:
    """A uvicorn server on a loopback port, in this event loop."""

    server: uvicorn.Server
    task: asyncio.Task[None]
    url: str

    async def stop(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(Exception):
            await self.task


async def start_simulated_backend(models: list[str]) -> RunningServer:
    """The simulated inference server behind the OpenAI API, on a free loopback port."""
    handler = SimulatedHandler(
        SimulateSettings(
            models=models,
            latency_s=0.3,
            latency_jitter_s=0.1,
            tokens_per_second=45,
            embedding_dim=64,
            max_tokens=96,
            failure_rate=0.02,
        )
    )
    sock = bind_socket("127.0.0.1", 0)
    config = uvicorn.Config(openai_app(handler), log_level="error", lifespan="off")
    server = EmbeddableServer(config, handle_signals=False)  # the demo owns the signals
    task = await serve_started(server, sock)
    if task is None:
        raise RuntimeError("the simulated backend stopped before it started")
    return RunningServer(server, task, f"http://127.0.0.1:{sock.getsockname()[1]}/v1")


async def register_demo_backends(gateway_url: str, backend_url: str, shared_model: str) -> None:
    """Add the backends through the gateway's API, as an operator would."""
    down = bind_socket("127.0.0.1", 0)  # a port nobody listens on: an unreachable server
    down_port = down.getsockname()[1]
    down.close()
    specs = [
        {
            "id": "vllm-sim",
            "type": "vllm",
            "url": backend_url,
            "declared_models": [
                {"name": BACKEND_MODEL, "context_length": 32768, "max_output_tokens": 4096},
                {"name": shared_model, "max_output_tokens": 2048},
            ],
            "labels": {"zone": "lab", "gpu": "simulated"},
            "max_concurrency": 4,
        },
        {
            "id": "ollama-lab",
            "type": "ollama",
            "url": f"http://127.0.0.1:{down_port}/v1",
            "labels": {"zone": "lab"},
            "max_concurrency": 2,
        },
    ]
    token = local_token(gateway_url)  # the demo's gateway runs here: its generated token
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with httpx.AsyncClient(base_url=gateway_url, timeout=10, headers=headers) as client:
        for spec in specs:
            response = await client.post("/api/backends", json=spec)
            if response.status_code != 201:
                log.warning("demo: adding backend %s: HTTP %s", spec["id"], response.status_code)


def mcp_available() -> bool:
    """The demo MCP server and its callers need the `mcp` SDK (the README's install has it)."""
    return importlib.util.find_spec("mcp") is not None


async def run_demo_mcp_relay(port: int, stop: asyncio.Event) -> int:
    """The demo MCP server over stdio, relayed to the gateway until `stop`."""
    settings = MCPRelaySettings(
        gateway_url=f"ws://127.0.0.1:{port}",
        id=MCP_RELAY_ID,
        name="Ops toolbox (demo)",
        command=[sys.executable, "-m", "gatewaytui.cli.demo_mcp_server"],
        drain_timeout_s=5,
    )
    return await run_mcp_relay(settings, stop)


async def mcp_traffic(
    gateway_url: str, rate: float, stop: asyncio.Event, api_key: str | None = None
) -> None:
    """MCP clients (the official SDK) calling the relayed server now and then."""
    rng = random.Random(11)
    pending: set[asyncio.Task[None]] = set()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=rng.expovariate(rate))
        if stop.is_set() or len(pending) >= 8:
            continue
        task = asyncio.create_task(
            _one_mcp_session(f"{gateway_url}/mcp/{MCP_RELAY_ID}", rng, api_key)
        )
        pending.add(task)
        task.add_done_callback(pending.discard)
    for task in list(pending):
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


async def _one_mcp_session(url: str, rng: random.Random, api_key: str | None = None) -> None:
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    try:
        async with (
            create_mcp_http_client(headers=headers) as http,
            streamable_http_client(url, http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            roll = rng.random()
            if roll < 0.15:
                await session.list_tools()
            elif roll < 0.45:
                await session.call_tool("search_runbooks", {"query": rng.choice(["drain", "key"])})
            elif roll < 0.7:
                await session.call_tool(
                    "get_incident", {"incident_id": f"INC-{rng.randint(1, 999)}"}
                )
            else:
                service = rng.choice(["gateway", "scheduler", "billing"])
                await session.call_tool("summarise_logs", {"service": service, "minutes": 30})
    except Exception as exc:  # a failed call is part of the show, never the end of it
        log.debug("demo MCP call failed: %s", exc)
