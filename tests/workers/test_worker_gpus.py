"""GPU stats: the NVML reader against a fake `pynvml`, its silence without NVML, and the
simulated worker's pretend GPUs reaching the gateway's state through heartbeats."""

from __future__ import annotations

import types
from typing import Any

import httpx

from gatewaytui.workers.gpu import FakeGpus, NvmlReader

MB = 1024 * 1024


class NVMLError(Exception):
    pass


def fake_pynvml(*, broken_power: bool = False, init_error: bool = False) -> types.ModuleType:
    """A stand-in for nvidia-ml-py with two GPUs; the second cannot report its power."""
    calls: list[str] = []
    gpus = [
        {"name": "NVIDIA H100 80GB HBM3", "util": 87, "used": 60_000 * MB, "total": 81_559 * MB,
         "temp": 71, "power": 412_345, "limit": 700_000},
        {"name": b"NVIDIA L4", "util": 3, "used": 1_024 * MB, "total": 23_034 * MB,
         "temp": 38, "power": None, "limit": 72_000},
    ]  # fmt: skip
    m = types.ModuleType("pynvml")
    m.NVML_TEMPERATURE_GPU = 0  # type: ignore[attr-defined]
    m.calls = calls  # type: ignore[attr-defined]

    def init() -> None:
        calls.append("init")
        if init_error:
            raise NVMLError("NVML Shared Library Not Found")

    def power(h: dict[str, Any]) -> int:
        if h["power"] is None or broken_power:
            raise NVMLError("Not Supported")
        return int(h["power"])

    m.nvmlInit = init  # type: ignore[attr-defined]
    m.nvmlShutdown = lambda: calls.append("shutdown")  # type: ignore[attr-defined]
    m.nvmlDeviceGetCount = lambda: (calls.append("count"), len(gpus))[1]  # type: ignore[attr-defined]
    m.nvmlDeviceGetHandleByIndex = lambda i: gpus[i]  # type: ignore[attr-defined]
    m.nvmlDeviceGetName = lambda h: h["name"]  # type: ignore[attr-defined]
    m.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=h["util"], memory=0)  # type: ignore[attr-defined]
    m.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=h["used"], total=h["total"])  # type: ignore[attr-defined]
    m.nvmlDeviceGetTemperature = lambda h, sensor: h["temp"]  # type: ignore[attr-defined]
    m.nvmlDeviceGetPowerUsage = power  # type: ignore[attr-defined]
    m.nvmlDeviceGetEnforcedPowerLimit = lambda h: h["limit"]  # type: ignore[attr-defined]
    return m


def test_nvml_reader_reports_every_gpu() -> None:
    nvml = fake_pynvml()
    reader = NvmlReader(load=lambda: nvml, cache_s=0)
    first, second = reader.read() or []
    assert first.name == "NVIDIA H100 80GB HBM3" and first.index == 0
    assert (first.util_percent, first.mem_used_mb, first.mem_total_mb) == (87.0, 60_000, 81_559)
    assert (first.temperature_c, first.power_w, first.power_limit_w) == (71.0, 412.3, 700.0)
    assert second.name == "NVIDIA L4"  # bytes from an older pynvml, decoded
    assert second.power_w is None and second.power_limit_w == 72.0  # unsupported: null
    reader.close()
    assert nvml.calls[0] == "init" and nvml.calls[-1] == "shutdown"  # type: ignore[attr-defined]


def test_nvml_reader_caches_between_heartbeats() -> None:
    nvml = fake_pynvml()
    now = [0.0]
    reader = NvmlReader(load=lambda: nvml, clock=lambda: now[0], cache_s=1.0)
    for _ in range(50):  # a fleet of 50 workers heartbeating at once
        assert reader.read() is not None
    now[0] = 1.5
    reader.read()
    assert nvml.calls.count("count") == 2  # type: ignore[attr-defined]


def test_no_library_or_no_driver_means_no_gpu_fields_never_an_error() -> None:
    def missing() -> types.ModuleType:
        raise ImportError("No module named 'pynvml'")

    absent = NvmlReader(load=missing, cache_s=0)
    assert absent.read() is None and absent.read() is None
    assert absent.why_not is not None and "gatewaytui[gpu]" in absent.why_not
    nvml = fake_pynvml(init_error=True)
    no_driver = NvmlReader(load=lambda: nvml, cache_s=0)
    assert no_driver.read() is None and not no_driver.available
    assert nvml.calls == ["init"]  # type: ignore[attr-defined]  # not retried every heartbeat


def test_fake_gpus_follow_the_load() -> None:
    share = [0.0]
    fake = FakeGpus(["NVIDIA H100 80GB HBM3"] * 2, 81_559, lambda: share[0])
    idle = fake.read() or []
    share[0] = 1.0
    busy = fake.read() or []
    assert [g.index for g in busy] == [0, 1]
    assert busy[0].util_percent > idle[0].util_percent  # type: ignore[operator]
    assert busy[0].mem_used_mb > idle[0].mem_used_mb  # type: ignore[operator]
    assert all(g.mem_used_mb <= g.mem_total_mb for g in busy)  # type: ignore[operator]


def test_simulated_gpus_reach_the_gateway_state(gateway, sim_workers) -> None:
    sim_workers(
        gateway,
        id="gpu-sim",
        simulate={"gpus": ["NVIDIA H100 80GB HBM3"] * 2, "gpu_mem_mb": 81_559},
    )
    sim_workers(gateway, id="cpu-sim")
    gateway.wait_for(lambda g: len(g.registry.get("gpu-sim").gpus) == 2)  # type: ignore[union-attr]
    state = httpx.get(gateway.url + "/api/state", timeout=10).json()
    workers = {w["id"]: w for w in state["workers"]}
    gpus = workers["gpu-sim"]["gpus"]
    assert [g["name"] for g in gpus] == ["NVIDIA H100 80GB HBM3"] * 2
    assert gpus[0]["mem_total_mb"] == 81_559 and gpus[0]["util_percent"] is not None
    assert workers["cpu-sim"]["gpus"] == []  # a simulated worker never reports real GPUs
