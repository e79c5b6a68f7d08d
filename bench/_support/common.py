"""Shared helpers for the benchmark scripts (not a test suite; nothing here asserts).

Process control on loopback, CPU/RSS from /proc, percentiles and the PASS/MISS line.
The scripts in bench/ put bench/_support on sys.path and `import common`. Helpers live in
this sub-folder so that CI's `for script in bench/*.py; ... --quick` runs only the benchmarks.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

SUPPORT = Path(__file__).resolve().parent
REPO = SUPPORT.parent.parent
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# ---- output -----------------------------------------------------------------------------


def ms(seconds: float) -> float:
    return seconds * 1000


class GcPauses:
    """Garbage-collector pauses by generation while installed: with 10,000 live rows a full
    (gen 2) collection is what produces a long tail, so it is shown next to the figures."""

    def __init__(self) -> None:
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._start = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.pauses[info["generation"]].append(ms(time.perf_counter() - self._start))

    def summary(self) -> str:
        """Uninstall and describe: `gen 0: 12 x, max 0.3 ms; ...` or `none`."""
        gc.callbacks.remove(self._callback)
        parts = [
            f"gen {generation}: {len(values)} x, max {max(values):.1f} ms"
            for generation, values in self.pauses.items()
            if values
        ]
        return "; ".join(parts) or "none"


def machine_ticks() -> tuple[int, ...]:
    """Jiffies of all CPUs from /proc/stat: (busy, total, softirq, steal)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...; guest time is already in user
    total = sum(v[:8])
    return total - v[3] - v[4], total, v[6], v[7]


def busy_share(before: tuple[int, ...], after: tuple[int, ...]) -> float:
    return (after[0] - before[0]) / max(after[1] - before[1], 1)


def machine_split(before: tuple[int, ...], after: tuple[int, ...]) -> dict[str, float]:
    """Shares of all CPUs between two machine_ticks(): busy, softirq and steal."""
    total = max(after[1] - before[1], 1)
    busy, softirq, steal = ((after[i] - before[i]) / total for i in (0, 2, 3))
    return {"busy": busy, "softirq": softirq, "steal": steal}


def machine_busy(seconds: float = 0.5) -> float:
    """Share of all CPUs busy over `seconds` (others' work skews every figure here)."""
    before = machine_ticks()
    time.sleep(seconds)
    return busy_share(before, machine_ticks())


def header(title: str) -> None:
    cpus = os.cpu_count()
    mem_gib = os.sysconf("SC_PHYS_PAGES") * PAGE / 2**30
    print(f"== {title}")
    busy = machine_busy()
    wait = float(os.environ.get("BENCH_WAIT_QUIET", "0") or 0)
    deadline = time.monotonic() + wait
    while busy > 0.10 and time.monotonic() < deadline:
        busy = machine_busy(2.0)
    print(
        f"   python {platform.python_version()} on {platform.machine()}, "
        f"{cpus} CPU(s), {mem_gib:.0f} GiB RAM, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"machine {busy:.0%} busy before start"
    )
    if busy > 0.10:
        print("   WARNING: something else is using the CPU; figures will be noisy")


def verdict(label: str, value: float, target: float, unit: str, *, higher_is_better: bool) -> bool:
    ok = value >= target if higher_is_better else value <= target
    op = ">=" if higher_is_better else "<="
    print(
        f"   {label}: {value:.3g} {unit} (target {op} {target:g} {unit}) -> "
        f"{'PASS' if ok else 'MISS'}"
    )
    return ok


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


# ---- processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _raise_nofile() -> None:
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Proc:
    """A child process we started; stopped (by its own pid) when the bench ends."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_dir: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = (log_dir or Path("/tmp")) / f"bench-{name}-{os.getpid()}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        full_env = dict(os.environ)
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        if env:
            full_env.update(env)
        self.popen = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            preexec_fn=_raise_nofile,
            cwd=REPO,
        )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def check(self) -> None:
        if not self.alive():
            raise RuntimeError(
                f"{self.name} exited with {self.popen.returncode}; log {self.log_path}:\n"
                + self.tail()
            )

    def tail(self, n: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return ""

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def rss_mib(self) -> float:
        return rss_mib(self.pid)

    def stop(self, timeout: float = 5.0) -> None:
        if self.alive():
            # Twice: the gateway and workers drain on the first signal, exit on the second.
            for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    self.popen.send_signal(sig)
                try:
                    self.popen.wait(timeout / 2)
                    break
                except subprocess.TimeoutExpired:
                    continue
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        self._log.close()


@contextlib.contextmanager
def processes() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    try:
        yield started
    finally:
        for proc in reversed(started):
            proc.stop()


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """utime + stime of one process (all its threads), or of its thread `tid`, in seconds."""
    where = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    with open(where) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After the ")" the fields start at index 2 (state): utime is field 14, stime 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def wait_http(url: str, timeout: float, *, proc: Proc | None = None, ok=(200,)) -> None:
    """Poll `url` until it answers with one of `ok` (bounded by `timeout`)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None:
            proc.check()
        try:
            r = httpx.get(url, timeout=1.0, trust_env=False)
            if r.status_code in ok:
                return
            last = f"HTTP {r.status_code} {r.text[:200]}"
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready within {timeout}s (last: {last})")


def gateway_argv(port: int, *extra: str, log_level: str = "warning") -> list[str]:
    """`gatewaytui serve` on loopback through the installed CLI module."""
    return [
        PYTHON,
        "-m",
        "gatewaytui.cli.main",
        "--log-level",
        log_level,
        "serve",
        "--server-host",
        "127.0.0.1",
        "--server-port",
        str(port),
        # A bench gateway on loopback is driven by this script alone: the operator API runs
        # open explicitly (the secure default would otherwise generate a token it never reads).
        "--server-open",
        "true",
        *extra,
    ]
