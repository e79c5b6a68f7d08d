"""A real `gatewaytui serve` process that a test can SIGKILL, SIGSTOP and restart on the same
port (the panel must follow it back), with simulated worker processes dialled in to it; and a
silent TCP listener (accepts, never answers), the other way a gateway can fail."""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path

import httpx

from support.fleet import Process, wait_until
from support.fleet import Worker as SimWorkerProcess
from support.ports import free_port
from support.waiting import ThreadPoller

__all__ = ["AnswerWatch", "GatewayProcess", "SilentListener", "SimWorkerProcess"]


class GatewayProcess:
    """`gatewaytui serve` on a fixed loopback port, open operator API, no ledger file."""

    def __init__(self, tmp: Path, *, port: int | None = None) -> None:
        self.tmp = tmp
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.process: Process | None = None
        self.starts = 0

    def start(self, *, wait: bool = True) -> GatewayProcess:
        """Start (again, on the same port); `wait`: until /healthz answers."""
        self.starts += 1
        self.process = Process(
            [
                "--log-level",
                "warning",
                "serve",
                "--server-port",
                str(self.port),
                "--server-open",
                "true",
                "--history-enabled",
                "false",
            ],
            self.tmp / f"gateway-{self.port}-{self.starts}.log",
        )
        if wait:
            wait_until(self.healthy, 60, "the gateway to serve")  # a loaded CI box
        return self

    def healthy(self) -> bool:
        if self.process is None or not self.process.alive():
            raise AssertionError(f"the gateway exited:\n{self.output()}")
        try:
            return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def output(self) -> str:
        return self.process.output() if self.process is not None else ""

    def kill(self) -> None:
        """SIGKILL: no goodbye to anyone, the port refuses at once."""
        if self.process is not None and self.process.alive():
            self.process.signal(signal.SIGKILL)
            self.process.proc.wait(10)
        if self.process is not None:
            self.process.stop()  # closes its log

    def pause(self) -> None:
        """SIGSTOP: the kernel still accepts connections; nothing answers them."""
        assert self.process is not None
        self.process.signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None:
            self.process.signal(signal.SIGCONT)  # a stopped process cannot handle SIGTERM
            self.process.stop()


class AnswerWatch(ThreadPoller):
    """A thread that notes when the gateway first answers /healthz again (monotonic time), to
    measure "gateway back" to "panel live" without blocking the test's event loop."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answered_at: float | None = None
        super().__init__()

    def poll(self) -> bool:
        try:
            if httpx.get(self.url + "/healthz", timeout=0.5).status_code == 200:
                self.answered_at = time.monotonic()
                return True
        except httpx.HTTPError:
            pass
        return False


class SilentListener:
    """Accepts TCP connections and never sends a byte (a wedged gateway's port)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()
