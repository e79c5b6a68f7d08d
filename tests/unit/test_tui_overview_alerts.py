"""The Overview's alerts and READY counts: workers and backends both serve a model."""

from __future__ import annotations

import json
import time

from gatewaytui.client.store import StateStore
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
