"""`gatewaytui demo --replicas 3`: a local redis-server and three replicas acting as one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gatewaytui.shared.operator_token import local_token
from support.fleet import REDIS_SERVER, wait_until


def test_demo_without_redis_server_says_how_to_install_it(tmp_path: Path) -> None:
    env = dict(os.environ, PATH=str(tmp_path))  # no redis-server on this PATH
    done = subprocess.run(
        [sys.executable, "-m", "gatewaytui.cli.main", "demo", "--replicas", "3", "--headless"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "apt install redis-server" in done.stderr


def test_demo_with_three_replicas_is_one_fleet() -> None:
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gatewaytui.cli.main", "demo", "--replicas", "3", "--headless",
         "--workers", "6", "--duration", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "3 replicas on " in line, line
        first = line.split("replicas on ", 1)[1].split(",")[0].strip()

        def fleet_state() -> bool:
            token = local_token(first)  # the demo is secure by default: its token is local
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            state = httpx.get(first + "/api/state", timeout=5, headers=headers).json()
            replicas = {r["id"] for r in state["replicas"]}
            holders = {w["replica"] for w in state["workers"] if w["status"] != "gone"}
            return replicas == {"r1", "r2", "r3"} and holders == replicas

        wait_until(fleet_state, 30, "the panel's replica to see the three replicas' workers")
    finally:
        proc.terminate()
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()
    # SIGTERM stopped what the demo started: its redis-server no longer answers.
    redis_port = int(line.rsplit(":", 1)[1].split("/", 1)[0])
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", redis_port), timeout=1).close()
