"""The Overview's alerts and READY counts: workers and backends both serve a model."""

from __future__ import annotations

import json
import time

from gatewaytui.client.store import StateStore
from gatewaytui.tui.failure_rate import FailureRate, FailureRates
from gatewaytui.tui.views.overview import Throughput, alerts, servers
from support.paths import SAMPLE


def store_with(**changes) -> StateStore:
    """The sample state with some collections replaced."""
    state = json.loads(SAMPLE.read_text())
    state.update(changes)
    store = StateStore()
    store.apply_snapshot({"type": "snapshot", "seq": 1, "state": state})
    return store


def backend(backend_id: str, **fields) -> dict:
    base = json.loads(SAMPLE.read_text())["backends"][0]
    return {**base, "id": backend_id, **fields}


def alert_lines(store: StateStore) -> list[str]:
    return [a.plain for a in alerts(store, Throughput(), time.time(), stale_after=1e9)]


def test_a_model_served_only_by_a_backend_counts_as_ready():
    model = {"id": "m", "workers": 0, "ready_workers": 0, "backends": 1, "ready_backends": 1}
    assert servers(model) == (1, 1)
    store = store_with(models=[{**model, "capacity": 4}], backends=[], workers=[], jobs=[])
    assert not any(line.startswith("✖ m") for line in alert_lines(store))


def test_a_model_nobody_ready_serves_is_an_alert():
    model = {"id": "m", "workers": 2, "ready_workers": 0, "backends": 1, "ready_backends": 0}
    store = store_with(models=[model], backends=[], workers=[], jobs=[])
    assert "✖ m: no ready worker or backend (3 listed, 0 queued)" in alert_lines(store)


def test_an_unhealthy_backend_still_in_routing_is_a_warning_and_out_of_routing_an_error():
    flaky = backend(
        "flaky",
        enabled=True,
        routing=True,
        status="unhealthy",
        consecutive_failures=1,
        last_error="GET /v1/models: connection refused",
    )
    out = backend("out", enabled=True, routing=False, status="unhealthy", last_error="timeout")
    off = backend("off", enabled=False, routing=False, status="unknown")
    lines = alert_lines(store_with(backends=[flaky, out, off], models=[], workers=[], jobs=[]))
    assert lines == [
        "▲ backend flaky unhealthy (1 failed probe): GET /v1/models: connection refused",
        "✖ backend out out of routing: timeout",
    ]


def test_a_draining_or_not_ready_gateway_is_the_first_alert():
    server = json.loads(SAMPLE.read_text())["server"]
    draining = store_with(server={**server, "status": "draining", "draining": True, "inflight": 3})
    assert alert_lines(draining)[0] == (
        "✖ server draining: new requests get 503; 3 in flight (undrain from the palette)"
    )
    not_ready = store_with(
        server={**server, "status": "not_ready", "status_reason": "no worker can take jobs"}
    )
    assert alert_lines(not_ready)[0] == "✖ gateway not ready: no worker can take jobs"
    assert not any("server draining" in line for line in alert_lines(store_with()))


# ---- failing: a share of recent jobs, not any failure ----------------------------------------


def _worker(worker_id: str, processed: int, failures: int) -> dict:
    return {"id": worker_id, "processed": processed, "failures": failures}


def test_one_failure_among_many_jobs_is_not_failing_but_a_fifth_is():
    rates = FailureRates(window_s=300, threshold=0.2, min_jobs=5)
    rates.sample({"a": _worker("a", 1000, 40), "b": _worker("b", 500, 3)}, now=0)
    rates.sample({"a": _worker("a", 1100, 41), "b": _worker("b", 508, 5)}, now=60)
    assert rates.rate("a") == FailureRate("a", failed=1, jobs=101, span_s=60)
    assert [(r.worker_id, r.failed, r.jobs) for r in rates.failing()] == [("b", 2, 10)]


def test_too_few_jobs_or_no_history_is_no_rate():
    rates = FailureRates(min_jobs=5)
    rates.sample({"a": _worker("a", 0, 7)}, now=0)  # failed before the panel looked
    assert rates.failing() == [] and rates.rate("a") is None
    rates.sample({"a": _worker("a", 1, 9)}, now=20)  # 2 of 3: a share, but too few jobs
    assert rates.rate("a").jobs == 3 and rates.failing() == []


def test_the_window_slides_and_old_failures_age_out():
    rates = FailureRates(window_s=300, threshold=0.2, min_jobs=5)
    rates.sample({"a": _worker("a", 0, 0)}, now=0)
    rates.sample({"a": _worker("a", 10, 10)}, now=30)  # a bad minute
    assert rates.failing()
    for t in range(40, 700, 10):  # then steady success
        rates.sample({"a": _worker("a", 10 + t, 10)}, now=t)
    rate = rates.rate("a")
    assert rate is not None and rate.failed == 0 and rate.span_s <= 310
    assert not rates.failing()
    rates.sample({}, now=700)  # a worker that is forgotten is forgotten here too
    assert rates.rate("a") is None


def test_totals_that_go_back_restart_the_window():
    rates = FailureRates()
    rates.sample({"a": _worker("a", 100, 50)}, now=0)
    rates.sample({"a": _worker("a", 2, 1)}, now=20)  # the gateway restarted
    assert rates.rate("a") is None or rates.rate("a").jobs == 0


def test_the_failing_alert_says_the_share_and_the_last_error():
    store = store_with(jobs=[])
    rates = FailureRates(threshold=0.2, min_jobs=5)
    worker = store.items["workers"]["gpu-h100-02"]
    rates.sample({"gpu-h100-02": _worker("gpu-h100-02", 100, 0)}, now=0)
    rates.sample({"gpu-h100-02": _worker("gpu-h100-02", 104, 6)}, now=120)
    lines = [a.plain for a in alerts(store, Throughput(), time.time(), 1e9, rates.failing())]
    failing = [line for line in lines if "failing" in line]
    assert len(failing) == 1
    assert failing[0].startswith("▲ gpu-h100-02 failing: 6 of 10 jobs (60%) in the last 2m")
    assert failing[0].endswith(str(worker["last_error"]))
    # Without a rate, a worker's past errors alone raise nothing.
    assert not [a for a in alerts(store, Throughput(), time.time(), 1e9) if "failing" in a.plain]
