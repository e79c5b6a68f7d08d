"""The GPUs of the worker's machine, read through NVML for the heartbeat.

`nvidia-ml-py` (the `pynvml` module) is an optional extra (`pip install gatewaytui[gpu]`).
Without it, without an NVIDIA driver, or with no GPUs, the reader reports nothing — never an
error: the heartbeat simply carries no `gpus`. One reader serves every worker of a process,
with a short cache, so a simulated fleet of thousands costs one NVML query per second.

`FakeGpus` pretends (the demo, tests): names from the settings, load following the worker's
in-flight jobs.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

from gatewaytui.schema.state import GpuStats

log = logging.getLogger("gatewaytui.workers.gpu")

CACHE_S = 1.0
_MB = 1024 * 1024


class NvmlReader:
    """Reads every GPU through NVML; disabled for good after NVML fails to start."""

    def __init__(
        self,
        load: Callable[[], ModuleType] = lambda: importlib.import_module("pynvml"),
        clock: Callable[[], float] = time.monotonic,
        cache_s: float = CACHE_S,
    ) -> None:
        self._load = load
        self._clock = clock
        self._cache_s = cache_s
        self._nvml: Any = None
        self._disabled = False
        self._cached: list[GpuStats] | None = None
        self._read_at = float("-inf")
        self.why_not: str | None = None  # why there are no GPU fields (for logs and tests)

    @property
    def available(self) -> bool:
        return self._start() is not None

    def read(self) -> list[GpuStats] | None:
        """The GPUs now (cached for `cache_s`), or None when NVML is not there."""
        now = self._clock()
        if now - self._read_at < self._cache_s:
            return self._cached
        self._read_at = now
        nvml = self._start()
        if nvml is None:
            self._cached = None
            return None
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except Exception as exc:
            self._cached = None
            self._give_up(f"nvmlDeviceGetCount failed: {exc}")
            return None
        self._cached = [_one(nvml, index) for index in range(count)] or None
        return self._cached

    def _start(self) -> Any:
        if self._disabled:
            return None
        if self._nvml is None:
            try:
                nvml = self._load()
                nvml.nvmlInit()
            except ImportError:
                self._give_up("nvidia-ml-py is not installed (pip install 'gatewaytui[gpu]')")
                return None
            except Exception as exc:  # NVMLError: no driver, no library, no permission
                self._give_up(f"NVML unavailable: {exc}")
                return None
            self._nvml = nvml
        return self._nvml

    def _give_up(self, why: str) -> None:
        self._disabled = True
        self.why_not = why
        log.info("no GPU stats: %s", why)

    def close(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                log.debug("nvmlShutdown failed", exc_info=True)
            self._nvml = None


def _field(read: Callable[[], Any]) -> Any:
    """One NVML query; a GPU that cannot answer one (NVMLError_NotSupported) leaves it null."""
    try:
        return read()
    except Exception:
        return None


def _one(nvml: Any, index: int) -> GpuStats:
    handle = _field(lambda: nvml.nvmlDeviceGetHandleByIndex(index))
    if handle is None:
        return GpuStats(index=index)
    name = _field(lambda: nvml.nvmlDeviceGetName(handle))
    if isinstance(name, bytes):  # older pynvml returns bytes
        name = name.decode("utf-8", "replace")
    util = _field(lambda: nvml.nvmlDeviceGetUtilizationRates(handle))
    memory = _field(lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
    sensor = getattr(nvml, "NVML_TEMPERATURE_GPU", 0)
    temperature = _field(lambda: nvml.nvmlDeviceGetTemperature(handle, sensor))
    power_mw = _field(lambda: nvml.nvmlDeviceGetPowerUsage(handle))
    limit_mw = _field(lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle))
    return GpuStats(
        index=index,
        name=str(name or "")[:256],
        util_percent=_clamp(getattr(util, "gpu", None), 0, 100),
        mem_used_mb=_mb(getattr(memory, "used", None)),
        mem_total_mb=_mb(getattr(memory, "total", None)),
        temperature_c=_clamp(temperature, -50, 200),
        power_w=None if power_mw is None else round(float(power_mw) / 1000, 1),
        power_limit_w=None if limit_mw is None else round(float(limit_mw) / 1000, 1),
    )


def _mb(value: Any) -> int | None:
    return None if value is None else int(value) // _MB


def _clamp(value: Any, low: float, high: float) -> float | None:
    if value is None:
        return None
    return float(min(max(float(value), low), high))


_PROCESS_READER: NvmlReader | None = None


def process_reader() -> NvmlReader:
    """The NVML reader of this process (shared by every worker it runs)."""
    global _PROCESS_READER
    if _PROCESS_READER is None:
        _PROCESS_READER = NvmlReader()
    return _PROCESS_READER


class FakeGpus:
    """Pretend GPUs for the simulated worker: utilisation, memory, heat and power follow
    `load()` (0..1, the share of the worker's slots in use)."""

    def __init__(self, names: list[str], mem_total_mb: int, load: Callable[[], float]) -> None:
        self.names = names
        self.mem_total_mb = mem_total_mb
        self._load = load

    def read(self) -> list[GpuStats] | None:
        share = min(max(self._load(), 0.0), 1.0)
        stats = []
        for index, name in enumerate(self.names):
            # A model is loaded whatever the load: memory starts at 60 % and grows with it.
            used = int(self.mem_total_mb * (0.6 + 0.3 * share)) - index * 512
            stats.append(
                GpuStats(
                    index=index,
                    name=name,
                    util_percent=round(min(100.0, 3 + 95 * share), 1),
                    mem_used_mb=max(0, min(used, self.mem_total_mb)),
                    mem_total_mb=self.mem_total_mb,
                    temperature_c=round(34 + 45 * share, 1),
                    power_w=round(60 + 290 * share, 1),
                    power_limit_w=350.0,
                )
            )
        return stats or None
