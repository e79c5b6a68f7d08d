"""Pure pieces of the workers layer: backoff, URLs, embeddings, load sampling, settings."""

from __future__ import annotations

import math
import random

import pytest

from gatewaytui.schema.protocol import StatusFrame
from gatewaytui.workers import (
    Backoff,
    SimulatedHandler,
    WorkerSettings,
    embed_text,
    gateway_ws_url,
)
from gatewaytui.workers.hostinfo import LoadSampler, host_info
from gatewaytui.workers.simulated import completion_words


def test_backoff_is_full_jitter_under_a_doubling_capped_ceiling() -> None:
    backoff = Backoff(0.5, 4.0, random.Random(7))
    ceilings = []
    for _ in range(6):
        ceiling = backoff.ceiling()
        ceilings.append(ceiling)
        assert 0 <= backoff.next_delay() <= ceiling
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.ceiling() == 0.5


def test_backoff_delays_are_spread_not_fixed() -> None:
    backoff = Backoff(1.0, 1.0, random.Random(1))
    delays = {round(backoff.next_delay(), 3) for _ in range(50)}
    assert len(delays) > 40 and min(delays) < 0.2 and max(delays) > 0.8


def test_backoff_survives_very_many_attempts() -> None:
    backoff = Backoff(0.5, 30.0)
    backoff.attempt = 10_000
    assert backoff.ceiling() == 30.0


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("127.0.0.1:8080", "ws://127.0.0.1:8080/api/workers/connect"),
        ("http://gw:8080/", "ws://gw:8080/api/workers/connect"),
        ("https://gw.example", "wss://gw.example/api/workers/connect"),
        ("wss://gw/api/workers/connect", "wss://gw/api/workers/connect"),
        ("ws://gw/prefix", "ws://gw/prefix/api/workers/connect"),
    ],
)
def test_gateway_url_is_normalised(given: str, expected: str) -> None:
    assert gateway_ws_url(given) == expected


def test_embeddings_are_unit_vectors_that_depend_only_on_the_text() -> None:
    a, b = embed_text("hello", 64), embed_text("hello", 64)
    assert a == b and len(a) == 64
    assert math.isclose(math.sqrt(sum(v * v for v in a)), 1.0)
    assert embed_text("hello!", 64) != a
    assert embed_text([1, 2, 3], 8) == embed_text([1, 2, 3], 8)


def test_completion_words_depend_on_seed_model_and_messages() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    words = completion_words(body, "m", 12, seed=1)
    assert len(words) == 12 and words == completion_words(body, "m", 12, seed=1)
    assert words != completion_words(body, "m", 12, seed=2)
    assert words != completion_words(body, "other", 12, seed=1)


def test_load_sampler_reads_proc(tmp_path) -> None:
    (tmp_path / "meminfo").write_text("MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 250 kB\n")
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 100 800 0 0 0 0 0 0\n")
    sampler = LoadSampler(str(tmp_path))
    cpu, mem = sampler.sample()
    assert (cpu, mem) == (None, 75.0)  # CPU needs two samples

    stat.write_text("cpu  150 0 150 900 0 0 0 0 0 0\n")  # 100 busy of 200 ticks
    sampler._cached_at = float("-inf")  # skip the one-second cache
    assert sampler.sample() == (50.0, 75.0)


def test_load_sampler_without_proc_falls_back_or_reports_nothing(tmp_path) -> None:
    cpu, mem = LoadSampler(str(tmp_path / "missing")).sample()
    assert mem is None
    assert cpu is None or cpu >= 0  # load average where the OS has one


def test_host_info_describes_this_machine() -> None:
    info = host_info()
    assert info.hostname and info.os and info.arch and info.python
    assert info.mem_total_mb is None or info.mem_total_mb > 0


def test_settings_hide_secrets_and_derive_fleet_identities() -> None:
    settings = WorkerSettings(
        key="k-secret", id="w", count=2, upstream={"url": "http://u:1", "api_key": "u-secret"}
    )
    assert "k-secret" not in repr(settings) and "u-secret" not in repr(settings)
    redacted = settings.redacted()
    assert redacted["key"] == "***" and redacted["upstream"]["api_key"] == "***"
    assert settings.worker_identities() == [("w-1", "w-1"), ("w-2", "w-2")]
    assert WorkerSettings(simulate={}).resolved_id().startswith("sim-")


def test_backend_state_is_kept_within_the_wire_limits() -> None:
    backend = SimulatedHandler()
    backend.set_ready(False, "x" * 5000)
    backend._update(models=[f"m{i}" for i in range(600)])
    assert backend.reason is not None and len(backend.reason) == 1024
    assert len(backend.models) == 512
    StatusFrame(ready=backend.ready, reason=backend.reason, models=backend.models)  # validates
