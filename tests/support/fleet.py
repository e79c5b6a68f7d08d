"""A real redis-server and real gateway replicas (and workers) in separate processes, for the
fleet tests: every process is started on free loopback ports and stopped by the fixtures."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from support.ports import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def wait_until(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy (bounded; no sleep stands in for it)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (httpx.HTTPError, OSError, KeyError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


class RedisServer:
    """`redis-server --port N --save '' --appendonly no` on loopback; restartable."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._pings, 10, "redis-server to answer PING")
        return self

    def _pings(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("GATEWAYTUI_GATEWAY", None)
    return env


class Process:
    """A gatewaytui subprocess with its output in a log file (shown when a test fails)."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.args = args
        self.log = log
        self._file = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gatewaytui.cli.main", *args],
            stdout=self._file,
            stderr=subprocess.STDOUT,
            env=_env(),
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)  # the second signal exits at once
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
        self._file.close()

    def output(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-4000:]
        return ""


class Replica(Process):
    def __init__(self, replica_id: str, redis_url: str, tmp: Path, *extra: str) -> None:
        self.id = replica_id
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        super().__init__(
            [
                "--log-level",
                "warning",
                "serve",
                "--server-port",
                str(self.port),
                "--cluster-redis-url",
                redis_url,
                "--cluster-replica-id",
                replica_id,
                "--cluster-replica-ttl",
                "2s",
                "--cluster-command-timeout",
                "3s",
                "--server-drain-timeout",
                "2s",
                "--backends-store-path",
                str(tmp / f"backends-{replica_id}.yaml"),
                "--server-open",  # the operator API without a token, as in the other tests
                "true",
                "--history-path",
                str(tmp / f"history-{replica_id}.sqlite3"),
                *extra,
            ],
            tmp / f"replica-{replica_id}.log",
        )
        wait_until(self._healthy, 60, f"replica {replica_id} to serve")  # a loaded CI box

    def _healthy(self) -> bool:
        if not self.alive():
            raise AssertionError(f"replica {self.id} exited:\n{self.output()}")
        return httpx.get(self.url + "/healthz", timeout=1).status_code == 200

    def state(self) -> dict[str, Any]:
        response = httpx.get(self.url + "/api/state", timeout=5)
        response.raise_for_status()
        return dict(response.json())

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(self.url + path, timeout=10, **kwargs)


class Worker(Process):
    def __init__(
        self, worker_id: str, replica: Replica, tmp: Path, *extra: str, log_level: str = "warning"
    ) -> None:
        self.id = worker_id
        super().__init__(
            [
                "--log-level",
                log_level,  # info: its own log ring keeps INFO lines (worker logs tests)
                "worker",
                "--simulate",
                "--gateway",
                replica.ws_url,
                "--id",
                worker_id,
                "--latency",
                "0.01",
                "--tokens-per-second",
                "0",
                "--drain-timeout",
                "1",
                *extra,
            ],
            tmp / f"worker-{worker_id.replace('/', '_')}.log",
        )


def workers_by_id(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {w["id"]: w for w in state["workers"]}


class Traffic:
    """Chat requests in a loop against one URL from a background thread: load during a
    failure, counting what succeeded and what did not (with the first errors kept)."""

    def __init__(self, url: str, model: str, *, stream: bool = False) -> None:
        import threading

        self.url = url + "/v1/chat/completions"
        self.body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        if stream:
            self.body["stream"] = True
        self.ok = 0
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                try:
                    response = client.post(self.url, json=self.body)
                    text = response.text
                    if response.status_code == 200 and '"error"' not in text:
                        self.ok += 1
                    else:
                        tail = f" ... {text[-200:]}" if len(text) > 400 else text[200:]
                        self.failed.append(f"{response.status_code}: {text[:200]}{tail}")
                except httpx.HTTPError as exc:
                    self.failed.append(repr(exc))

    def stop(self) -> Traffic:
        self._stop.set()
        self._thread.join(15)
        return self
