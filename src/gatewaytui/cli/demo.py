"""`gatewaytui demo`: the gateway core on loopback, a fleet of simulated workers, backends (a
simulated OpenAI-compatible server and one that is down), an MCP relay and steady client
traffic, so every part of the panel has something real to show."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import httpx

from gatewaytui.cli.demo_services import (
    BACKEND_MODEL,
    mcp_available,
    mcp_traffic,
    register_demo_backends,
    run_demo_mcp_relay,
    start_simulated_backend,
)
from gatewaytui.gateway.config import GatewayConfig
from gatewaytui.gateway.core import Gateway
from gatewaytui.gateway.server import bind_socket, make_server, serve_started
from gatewaytui.shared.operator_token import token_path
from gatewaytui.workers.logbuffer import keep_info_lines
from gatewaytui.workers.runner import run_workers
from gatewaytui.workers.settings import SimulateSettings, WorkerSettings

log = logging.getLogger("gatewaytui.demo")

# The demo's API keys, by name: its traffic is spread over them so History and Usage have
# someone to speak of (a demo's keys, printed at start; never use them elsewhere).
DEMO_KEYS = {
    "team-search": "demo-key-search",
    "team-chat": "demo-key-chat",
    "batch-jobs": "demo-key-batch",
}
CHAT_8B = "llama3.1:8b-instruct-q4_K_M"
CHAT_70B = "llama3.1:70b-instruct-q4_K_M"
CODER = "qwen2.5-coder:7b"
EMBED = "nomic-embed-text"


@dataclass(frozen=True)
class FleetGroup:
    prefix: str
    models: tuple[str, ...]
    share: float
    concurrency: int
    batch_size: int
    latency_s: float
    tokens_per_second: float
    failure_rate: float = 0.0
    gpu: str = ""


# Pretend GPUs of the demo's groups (by their `gpu` label): name, count, memory (MB).
_GPU_NAMES = {"A100": "NVIDIA A100 80GB PCIe", "L4": "NVIDIA L4", "H100": "NVIDIA H100 80GB HBM3"}
_GPU_COUNT = {"A100": 1, "L4": 1, "H100": 2}
_GPU_MEM = {"A100": 81_920, "L4": 23_034, "H100": 81_559}

FLEET = (
    FleetGroup("gpu-a100", (CHAT_8B, EMBED), 0.4, 4, 32, 0.25, 60, 0.0, "A100"),
    FleetGroup("gpu-l4", (CODER,), 0.3, 2, 16, 0.4, 30, 0.03, "L4"),
    FleetGroup("gpu-h100", (CHAT_70B,), 0.2, 8, 32, 0.6, 25, 0.0, "H100"),
    FleetGroup("cpu-embed", (EMBED,), 0.1, 2, 16, 0.05, 0, 0.0, ""),
)


def fleet_sizes(total: int) -> list[int]:
    """Split `total` workers across the groups by share, every group getting at least one."""
    sizes = [max(1, round(total * g.share)) for g in FLEET]
    while sum(sizes) > max(total, len(FLEET)):
        sizes[sizes.index(max(sizes))] -= 1
    return sizes


async def traffic(base_url: str, rate: float, stop: asyncio.Event) -> None:
    """Steady, varied requests: chat (streaming and not) on every model, and embeddings."""
    rng = random.Random(7)
    pending: set[asyncio.Task[Any]] = set()
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        while not stop.is_set():
            if len(pending) < 200:
                pending.add(asyncio.create_task(_one_request(client, rng)))
                pending = {t for t in pending if not t.done()}
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=rng.expovariate(rate))
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def _one_request(client: httpx.AsyncClient, rng: random.Random) -> None:
    roll = rng.random()
    key = rng.choices(list(DEMO_KEYS.values()), weights=(5, 3, 2))[0]
    headers = {"Authorization": f"Bearer {key}"}
    try:
        if roll < 0.2:
            inputs = [
                f"document {i} about topic {rng.randint(1, 99)}"
                for i in range(rng.randint(20, 120))
            ]
            await client.post(
                "/v1/embeddings", json={"model": EMBED, "input": inputs}, headers=headers
            )
            return
        if roll > 0.97:  # an impatient client: gives up on the big model (client_gone)
            hurry = {"model": CHAT_70B, "messages": [{"role": "user", "content": "Hurry."}]}
            await client.post("/v1/chat/completions", json=hurry, headers=headers, timeout=0.3)
            return
        model = rng.choice([CHAT_8B, CHAT_8B, CODER, CHAT_70B, BACKEND_MODEL])
        body = {
            "model": model,
            "messages": [
                {"role": "user", "content": "Summarise the incident report in three lines."}
            ],
            "max_tokens": rng.randint(16, 160),
            "stream": roll < 0.6,
        }
        if body["stream"]:
            async with client.stream(
                "POST", "/v1/chat/completions", json=body, headers=headers
            ) as response:
                async for _ in response.aiter_lines():
                    pass
        else:
            await client.post("/v1/chat/completions", json=body, headers=headers)
    except httpx.HTTPError as exc:
        log.debug("demo request failed: %s", exc)


def status_line(gateway: Gateway) -> str:
    counts: dict[str, int] = {}
    for worker in gateway.registry:
        counts[worker.status.value] = counts.get(worker.status.value, 0) + 1
    by_status = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return (
        f"workers: {by_status or 'none'} | in-flight {len(gateway.jobs)} | "
        f"queue {len(gateway.queue.waiters)} | requests {gateway.totals.requests} | "
        f"tokens out {gateway.totals.tokens_out}"
    )


def _fleet_settings(group: FleetGroup, size: int, port: int, prefix: str = "") -> WorkerSettings:
    """The simulated workers of one fleet group, dialling the demo's gateway."""
    return WorkerSettings(
        gateway_url=f"ws://127.0.0.1:{port}",
        id=prefix + group.prefix,
        labels={"gpu": group.gpu} if group.gpu else {"tier": "cpu"},
        concurrency=group.concurrency,
        batch_size=group.batch_size,
        count=size,
        drain_timeout_s=5,
        simulate=SimulateSettings(
            models=list(group.models),
            latency_s=group.latency_s,
            latency_jitter_s=group.latency_s / 3,
            tokens_per_second=group.tokens_per_second,
            failure_rate=group.failure_rate,
            embedding_dim=64,
            max_tokens=96,
            gpus=[_GPU_NAMES[group.gpu]] * _GPU_COUNT[group.gpu] if group.gpu else [],
            gpu_mem_mb=_GPU_MEM[group.gpu] if group.gpu else 1,
        ),
    )


def _demo_config(port: int, scratch: str, fleet: tuple[str, str] | None) -> GatewayConfig:
    """The demo gateway's config: its demo API keys, backends and ledger in `scratch`."""
    cluster = {"cluster__redis_url": fleet[0], "cluster__replica_id": fleet[1]} if fleet else {}
    return GatewayConfig.build(
        server__port=str(port),
        backends__store_path=f"{scratch}/backends.yaml",
        history__path=f"{scratch}/history.sqlite3",  # the usage ledger, gone at exit
        server__api_keys=",".join(f"{name}={key}" for name, key in DEMO_KEYS.items()),
        **cluster,
    )


def _print_welcome(base: str, config: GatewayConfig) -> None:
    print(f"gatewaytui demo: gateway on {base} (state: {base}/api/state, metrics: {base}/metrics)")
    names = ", ".join(f"{name}={key}" for name, key in DEMO_KEYS.items())
    print(f"API keys (name=key): {names}")
    if not (config.open or config.operator_tokens):
        print(f"operator token (for /api): in {token_path(config.token_file)}")
    print("press Ctrl+C to stop")


def _stop_on_signals() -> asyncio.Event:
    """An event SIGINT, SIGTERM and SIGHUP set (where the loop can take signal handlers):
    a closed terminal or a dropped SSH session hangs the demo up, and it must still stop its
    helpers and remove its scratch directory rather than die where it stands."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    return stop


def _traffic_tasks(
    base: str, port: int, rate: float, stop: asyncio.Event
) -> list[asyncio.Task[Any]]:
    """Chat and embeddings traffic; with the mcp package, a relay and MCP calls too."""
    helpers: list[asyncio.Task[Any]] = [asyncio.create_task(traffic(base, rate, stop))]
    if mcp_available():
        helpers.append(asyncio.create_task(run_demo_mcp_relay(port, stop)))
        mcp_key = DEMO_KEYS["team-chat"]
        helpers.append(asyncio.create_task(mcp_traffic(base, max(rate / 4, 0.1), stop, mcp_key)))
    else:
        print("the mcp package is not installed: the demo runs no MCP relay")
    return helpers


async def _report_until(gateway: Gateway, stop: asyncio.Event, duration: float | None) -> None:
    """A status line every 2 s until stopped (or `duration` seconds have passed)."""
    started = time.monotonic()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=2.0)
        print(status_line(gateway), flush=True)
        if duration is not None and time.monotonic() - started >= duration:
            stop.set()


async def run_demo(
    *,
    port: int = 0,
    workers: int = 10,
    rate: float = 3.0,
    duration: float | None = None,
    fleet: tuple[str, str] | None = None,
) -> int:
    """`fleet`: (Redis URL, replica id) to run as one replica of `demo --replicas N`."""
    sock = bind_socket("127.0.0.1", port)
    port = sock.getsockname()[1]
    # Backends added while playing with the demo live in a temporary file, not the cwd.
    scratch = tempfile.TemporaryDirectory(prefix="gatewaytui-demo-")  # removed at exit
    config = _demo_config(port, scratch.name, fleet)
    gateway = Gateway(config)
    server = make_server(gateway, handle_signals=False)
    serving = await serve_started(server, sock)
    if serving is None:
        return 1
    base = f"http://127.0.0.1:{port}"
    stop = _stop_on_signals()  # before the welcome: whoever reads it may signal at once
    _print_welcome(base, config)
    keep_info_lines()  # the panel's worker logs screen shows the workers' INFO lines
    prefix = f"{fleet[1]}-" if fleet else ""  # worker ids are unique across a fleet
    fleets = [
        asyncio.create_task(run_workers(_fleet_settings(group, size, port, prefix), stop))
        for group, size in zip(FLEET, fleet_sizes(workers), strict=True)
    ]
    simulated = await start_simulated_backend([BACKEND_MODEL, CHAT_8B])
    await register_demo_backends(base, simulated.url, CHAT_8B)
    helpers = _traffic_tasks(base, port, rate, stop)
    try:
        await _report_until(gateway, stop, duration)
    finally:
        stop.set()
        await asyncio.gather(*helpers, *fleets, return_exceptions=True)
        await simulated.stop()
        server.should_exit = True
        await serving
        scratch.cleanup()  # the ledger is closed: its files go now, not at interpreter exit
    return 0


def run_demo_with_tui(
    *,
    port: int = 0,
    workers: int = 10,
    rate: float = 3.0,
    theme: str | None = None,
    read_only: bool = False,
    config: Any = None,
    config_path: Any = None,
) -> int:
    """The headless demo in a child process, and the panel connected to it like any gateway.

    `config`: the user's panel config (`TuiConfig`): its keymap, refresh rate and themes apply;
    its contexts are replaced by the demo's own.

    Keeping the gateway and its workers in another process means the panel meets it exactly
    as it would over SSH, and neither slows the other.
    """
    import subprocess
    import sys

    from gatewaytui.tui.app import GatewayApp
    from gatewaytui.tui.config import ContextConfig, TuiConfig

    child = subprocess.Popen(
        [sys.executable, "-m", "gatewaytui.cli.main", "--log-level", "error", "demo", "--headless",
         "--port", str(port), "--workers", str(workers), "--rate", str(rate)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        first = child.stdout.readline()
        if "gateway on " not in first:
            print(f"gatewaytui demo: the gateway did not start ({first.strip() or 'no output'})")
            return 1
        url = first.split("gateway on ", 1)[1].split()[0]
        threading_drain(child)
        context = ContextConfig(name="demo", url=url, color="green")
        panel = demo_panel_config(config if config is not None else TuiConfig(), context)
        GatewayApp(
            panel, context=context, theme=theme, read_only=read_only, config_path=config_path
        ).run()
    finally:
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
    return 0


def demo_panel_config(config: Any, context: Any) -> Any:
    """The user's panel config with the demo gateway as its only context."""
    return config.model_copy(update={"contexts": [context], "default_context": context.name})


def threading_drain(child: Any) -> None:
    """Keep reading the child's status lines so its pipe never fills up and blocks it."""
    import threading

    def drain() -> None:
        for _ in child.stdout:
            pass

    threading.Thread(target=drain, daemon=True).start()
