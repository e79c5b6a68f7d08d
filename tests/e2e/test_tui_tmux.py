"""End to end in a real terminal: `gatewaytui demo` under tmux, read back with capture-pane."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.paths import SAMPLE

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Tmux:
    """A private tmux server (its own socket), so the panel gets this test's environment."""

    def __init__(self, tmp_path: Path) -> None:
        self.socket = f"gwtui-{os.getpid()}-{time.monotonic_ns()}"
        self.env = {
            **os.environ,
            "XDG_STATE_HOME": str(tmp_path / "state"),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "TERM": "xterm-256color",
        }

    def run(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, env=self.env
        )
        if check and result.returncode != 0:
            raise AssertionError(f"tmux {args}: {result.stderr}")
        return result.stdout

    def start(self, command: str, width: int = 120, height: int = 40) -> None:
        self.run("new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), command)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "t", check=False)

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "t", *keys)

    def wait_for(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared; screen:\n{screen}")
            time.sleep(0.2)

    def wait_gone(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text in self.screen():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} did not go away")
            time.sleep(0.2)

    def alive(self) -> bool:
        probe = ["tmux", "-L", self.socket, "has-session", "-t", "t"]
        return subprocess.run(probe, capture_output=True, env=self.env).returncode == 0

    def kill(self) -> None:
        self.run("kill-server", check=False)


@pytest.fixture
def tmux(tmp_path) -> Iterator[Tmux]:
    terminal = Tmux(tmp_path)
    yield terminal
    terminal.kill()


def test_demo_under_tmux(tmux):
    tmux.start(f"{sys.executable} -m gatewaytui.cli.main demo --workers 6 --rate 4")
    tmux.wait_for("● live")
    screen = tmux.wait_for("requests/s")
    assert "Traceback" not in screen
    tmux.keys("2")
    screen = tmux.wait_for("gpu-a100-1")
    assert "● working" in screen or "○ idle" in screen
    tmux.keys("d")
    tmux.wait_for("Drain 1 worker?")
    tmux.keys("n")
    tmux.keys("3")
    tmux.wait_for("ELAPSED")
    tmux.keys("?")
    tmux.wait_for("gatewaytui keys")
    tmux.keys("Escape")
    tmux.wait_gone("gatewaytui keys")  # a key right after ESC would read as alt+key
    tmux.keys("q")
    deadline = time.monotonic() + 20
    while tmux.alive():
        assert time.monotonic() < deadline, tmux.screen()
        time.sleep(0.2)


def test_panel_exits_when_the_terminal_goes_away(tmux):
    tmux.start(f"{sys.executable} -m gatewaytui.cli.main open {SAMPLE}", 80, 24)
    tmux.wait_for("READ-ONLY")
    pid = int(tmux.run("display-message", "-p", "-t", "t", "#{pane_pid}").strip())
    tmux.kill()  # the terminal is gone: the panel gets SIGHUP and its tty closes
    deadline = time.monotonic() + 15
    while process_running(pid):
        assert time.monotonic() < deadline, "the panel kept running without a terminal"
        time.sleep(0.1)


def process_running(pid: int) -> bool:
    """True while `pid` runs; an exited process nobody has reaped yet (a zombie) has ended."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
