"""`gatewaytui demo --replicas N`: a local redis-server, N gateway replicas (each a headless
demo with its share of the workers and traffic) and the panel on the first replica."""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Any

INSTALL_HINT = (
    "gatewaytui demo --replicas needs redis-server on PATH; install it first "
    "(Debian/Ubuntu: sudo apt install redis-server; macOS: brew install redis)"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_redis(binary: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)  # a startup poll, bounded by the deadline
    proc.kill()
    raise RuntimeError(f"redis-server did not start on port {port}")


def _start_replica(args: argparse.Namespace, redis_url: str, index: int) -> tuple[Any, str]:
    share = max(1, args.workers // args.replicas + (index < args.workers % args.replicas))
    child = subprocess.Popen(
        [sys.executable, "-m", "gatewaytui.cli.main", "--log-level", "error", "demo",
         "--headless", "--port", "0", "--workers", str(share),
         "--rate", str(args.rate / args.replicas),
         "--fleet-redis-url", redis_url, "--fleet-replica-id", f"r{index + 1}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    assert child.stdout is not None
    first = child.stdout.readline()
    if "gateway on " not in first:
        child.kill()
        raise RuntimeError(f"replica r{index + 1} did not start ({first.strip() or 'no output'})")
    return child, first.split("gateway on ", 1)[1].split()[0]


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_fleet_demo(args: argparse.Namespace, config: Any) -> int:
    from gatewaytui.cli.demo import demo_panel_config, threading_drain

    binary = shutil.which("redis-server")
    if binary is None:
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    redis, redis_url = _start_redis(binary)
    children: list[Any] = []
    try:
        urls = []
        for index in range(args.replicas):
            child, url = _start_replica(args, redis_url, index)
            children.append(child)
            urls.append(url)
            threading_drain(child)
        print(f"gatewaytui demo: {args.replicas} replicas on {', '.join(urls)} (redis {redis_url})")
        if args.headless:
            print("press Ctrl+C to stop")
            # SIGTERM ends the wait like Ctrl+C: without it Python exits at once, the finally
            # below never runs and the redis-server (output to /dev/null) outlives the demo.
            signal.signal(signal.SIGTERM, _interrupt)
            with contextlib.suppress(subprocess.TimeoutExpired, KeyboardInterrupt):
                children[0].wait(args.duration)
            return 0
        from gatewaytui.tui.app import GatewayApp
        from gatewaytui.tui.config import ContextConfig, TuiConfig

        context = ContextConfig(name="demo-fleet", url=urls[0], color="green")
        panel = demo_panel_config(config if config is not None else TuiConfig(), context)
        GatewayApp(panel, context=context, theme=args.theme, read_only=args.read_only).run()
        return 0
    except RuntimeError as exc:
        print(f"gatewaytui demo: {exc}", file=sys.stderr)
        return 1
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
        redis.terminate()
        redis.wait(5)
