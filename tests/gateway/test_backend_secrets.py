"""Backend keys and filters (issue 11, items 4 and 9): `env:` references only name backend
variables, a stored key only goes to the URL it was stored with, and no operator-supplied
pattern can run unbounded or on every state read. Real gateway, real upstream."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from gatewaytui.schema.backends import BackendSpec, regex_problem
from support.backend_upstream import upstreams


@pytest.fixture
def upstream():
    yield from upstreams()


@pytest.fixture
def running(make_gateway, tmp_path: Path):
    return make_gateway(
        backends__store_path=str(tmp_path / "backends.yaml"), backends__probe_interval="1h"
    )


def test_env_references_are_limited_to_backend_variables(running, upstream, monkeypatch):
    up = upstream()
    monkeypatch.setenv("SERVER_WORKER_KEY", "the-worker-secret")
    with httpx.Client(base_url=running.url, timeout=20) as c:
        probe = c.post(
            "/api/backends/x/probe", json={"url": up.url, "api_key": "env:SERVER_WORKER_KEY"}
        )
        assert probe.status_code == 422
        assert "GATEWAYTUI_BACKEND_" in probe.json()["error"]["fields"]["api_key"]
        made = c.post(
            "/api/backends", json={"id": "x", "url": up.url, "api_key": "env:SERVER_WORKER_KEY"}
        )
        assert made.status_code == 422
        monkeypatch.setenv("GATEWAYTUI_BACKEND_X", "sk-x")
        ok = c.post(
            "/api/backends", json={"id": "x", "url": up.url, "api_key": "env:GATEWAYTUI_BACKEND_X"}
        )
        assert ok.status_code == 201
    assert all("the-worker-secret" not in str(r.get("auth")) for r in up.requests)


def test_a_stored_key_never_follows_a_different_url(running, upstream):
    real, evil = upstream(key="sk-stored"), upstream()
    with httpx.Client(base_url=running.url, timeout=20) as c:
        made = c.post("/api/backends", json={"id": "b", "url": real.url, "api_key": "sk-stored"})
        assert made.status_code == 201
        dry = c.post("/api/backends/b/probe", json={"url": evil.url})
        assert (
            dry.status_code == 422
            and "send the key again" in dry.json()["error"]["fields"]["api_key"]
        )
        moved = c.patch("/api/backends/b", json={"url": evil.url})
        assert moved.status_code == 422
        put = c.put("/api/backends/b", json={"id": "b", "url": evil.url})
        assert put.status_code == 422
        resupplied = c.patch("/api/backends/b", json={"url": evil.url, "api_key": "sk-new"})
        assert resupplied.status_code == 200
        same_url = c.post("/api/backends/b/probe", json={"url": evil.url, "timeout_s": 5})
        assert same_url.status_code == 200
    assert all(r.get("auth") != "Bearer sk-stored" for r in evil.requests)


@pytest.mark.parametrize("pattern", ["^(a+)+$", "(a|aa)*$", "(x*)*y", r"(\w+)\1"])
def test_catastrophic_filter_patterns_are_refused_at_validation(pattern):
    assert regex_problem(pattern) is not None
    with pytest.raises(ValueError):
        BackendSpec(id="b", url="http://h:1", include_models=[pattern])


def test_filters_run_once_per_probe_not_per_state_read(running, upstream):
    up = upstream(models=["a" * 25 + "!", "llama3:8b", "qwen2"])
    calls = {"n": 0}
    with httpx.Client(base_url=running.url, timeout=20) as c:
        made = c.post(
            "/api/backends",
            json={"id": "f", "url": up.url, "include_models": ["^llama", "^a+!$"]},
        )
        assert made.status_code == 201
        running.wait_for(lambda g: g.backends.records["f"].discovered != [])
        record = running.gateway.backends.records["f"]
        spec = record.spec
        original = type(spec).admits

        def counting(self, model):
            calls["n"] += 1
            return original(self, model)

        type(spec).admits = counting
        try:
            for _ in range(20):
                assert c.get("/api/state").status_code == 200
        finally:
            type(spec).admits = original
        models = c.get("/api/backends/f").json()["models"]
    assert sorted(models) == ["a" * 25 + "!", "llama3:8b"]
    assert calls["n"] == 0  # no filter work on the read path
