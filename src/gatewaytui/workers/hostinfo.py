"""What a worker tells the gateway about its machine, and cheap load samples for heartbeats.

Everything here is computed once or cached for a second, because one process may run
thousands of simulated workers that all heartbeat.
"""

from __future__ import annotations

import functools
import os
import platform
import time

from gatewaytui.schema import HostInfo

_SAMPLE_TTL_S = 1.0


@functools.cache
def host_info() -> HostInfo:
    """Host name, OS, architecture, CPUs, memory and Python version of this process."""
    return HostInfo(
        hostname=platform.node(),
        os=platform.system(),
        arch=platform.machine(),
        cpu_count=os.cpu_count(),
        mem_total_mb=_mem_total_mb(),
        python=platform.python_version(),
    )


def _mem_total_mb() -> int | None:
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        page_size = os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    if pages <= 0 or page_size <= 0:
        return None
    return pages * page_size // (1024 * 1024)


class LoadSampler:
    """CPU and memory use in percent, from /proc when present, else the load average.

    CPU is the busy share of all cores since the previous sample (None on the first one);
    without /proc/stat it falls back to the 1-minute load average over the core count.
    """

    def __init__(self, proc: str = "/proc") -> None:
        self._proc = proc
        self._last_cpu: tuple[int, int] | None = None
        self._cached: tuple[float | None, float | None] = (None, None)
        self._cached_at = float("-inf")

    def sample(self) -> tuple[float | None, float | None]:
        """(cpu_percent, mem_percent); either may be None when unavailable."""
        now = time.monotonic()
        if now - self._cached_at >= _SAMPLE_TTL_S:
            self._cached = (self._cpu_percent(), self._mem_percent())
            self._cached_at = now
        return self._cached

    def _cpu_percent(self) -> float | None:
        try:
            with open(f"{self._proc}/stat", encoding="ascii") as fh:
                fields = fh.readline().split()
        except OSError:
            return self._loadavg_percent()
        if not fields or fields[0] != "cpu" or len(fields) < 5:
            return self._loadavg_percent()
        values = [int(v) for v in fields[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        total = sum(values[:8])
        previous, self._last_cpu = self._last_cpu, (total, idle)
        if previous is None or total <= previous[0]:
            return None
        busy = (total - previous[0]) - (idle - previous[1])
        return round(max(0.0, min(100.0, 100.0 * busy / (total - previous[0]))), 1)

    @staticmethod
    def _loadavg_percent() -> float | None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            return None
        return round(min(100_000.0, 100.0 * load / (os.cpu_count() or 1)), 1)

    def _mem_percent(self) -> float | None:
        info: dict[str, int] = {}
        try:
            with open(f"{self._proc}/meminfo", encoding="ascii") as fh:
                for line in fh:
                    key, _, rest = line.partition(":")
                    if key in ("MemTotal", "MemAvailable"):
                        info[key] = int(rest.split()[0])
                        if len(info) == 2:
                            break
        except (OSError, ValueError, IndexError):
            return None
        total, available = info.get("MemTotal"), info.get("MemAvailable")
        if not total or available is None:
            return None
        return round(max(0.0, min(100.0, 100.0 * (total - available) / total)), 1)


# One sampler per process: every worker in it shares the same machine.
LOAD_SAMPLER = LoadSampler()
