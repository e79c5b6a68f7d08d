"""Backends: the API and its store file, probes and health, routing to a real upstream.

Every test runs a real gateway on a loopback port and a real OpenAI-compatible upstream (a
small Starlette app under uvicorn, tests/support/backend_upstream.py); clients are httpx and the
official `openai` SDK.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import threading
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from gatewaytui.gateway.backends import http as backend_http
from gatewaytui.gateway.backends.store import BackendStoreError, parse_store
from gatewaytui.gateway.config import GatewayConfig
from gatewaytui.gateway.core import Gateway
from gatewaytui.schema import BackendStatus
from gatewaytui.schema.backends import BackendSpec, ProbeResult
from support.backend_upstream import upstreams
from support.ports import free_port, reserve_port
from support.waiting import wait_until

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def upstream():
    yield from upstreams()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "backends.yaml"


@pytest.fixture
def gw(make_gateway, store):
    def start(**overrides):
        options = {"backends__store_path": str(store), "backends__probe_interval": "1h"}
        return make_gateway(**{**options, **overrides})

    return start


def api(running) -> httpx.Client:
    return httpx.Client(base_url=running.url, timeout=20)


def sdk(running) -> openai.OpenAI:
    return openai.OpenAI(base_url=running.url + "/v1", api_key="none", max_retries=0, timeout=20)


def healthy(running, backend_id: str) -> None:
    running.wait_for(
        lambda g: (
            (r := g.backends.records.get(backend_id)) is not None
            and r.status is BackendStatus.HEALTHY
        )
    )


def stored(store: Path) -> dict[str, dict]:
    return {b.spec.id: b for b in parse_store(store.read_bytes(), str(store))}


# ---- the API and the store file ------------------------------------------------------------


def test_crud_round_trip_and_the_store_file(gw, store, upstream):
    up = upstream()
    running = gw()
    with api(running) as c:
        created = c.post(
            "/api/backends",
            json={"id": "gpu-box", "type": "llama.cpp", "url": up.root, "labels": {"rack": "r1"}},
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["type"] == "llama-server"  # the alias is canonicalised
        assert body["url"] == up.url  # a URL without a path gets /v1
        assert body["revision"] == 1 and body["api_key_set"] is False
        assert [b["id"] for b in c.get("/api/backends").json()] == ["gpu-box"]
        assert c.get("/api/backends/gpu-box").json()["labels"] == {"rack": "r1"}
        assert stored(store)["gpu-box"].revision == 1

        patched = c.patch("/api/backends/gpu-box", json={"enabled": False})
        assert patched.status_code == 200
        assert patched.json()["revision"] == 2 and patched.json()["routing"] is False

        # GET -> PUT unchanged: read-only fields are ignored and nothing changes.
        same = c.put("/api/backends/gpu-box", json=c.get("/api/backends/gpu-box").json())
        assert same.status_code == 200 and same.json()["revision"] == 2

        edited = c.get("/api/backends/gpu-box").json() | {"max_concurrency": 3, "enabled": True}
        replaced = c.put("/api/backends/gpu-box", json=edited)
        assert replaced.json()["revision"] == 3 and replaced.json()["max_concurrency"] == 3
        entry = stored(store)["gpu-box"]
        assert (entry.revision, entry.spec.max_concurrency) == (3, 3)
        assert stat.S_IMODE(os.stat(store).st_mode) == 0o600  # it may hold keys

        put_new = c.put("/api/backends/other", json={"url": up.url})  # PUT creates
        assert put_new.status_code == 201 and put_new.json()["id"] == "other"

        deleted = c.delete("/api/backends/gpu-box")
        assert deleted.status_code == 200 and deleted.json()["target"] == "gpu-box"
        assert c.get("/api/backends/gpu-box").status_code == 404
        assert set(stored(store)) == {"other"}
        assert c.delete("/api/backends/gpu-box").status_code == 404


def test_invalid_specs_get_422_per_field_and_change_nothing(gw, store):
    running = gw()
    with api(running) as c:
        bad = c.post(
            "/api/backends",
            json={
                "id": "no spaces",
                "type": "tensorflow",
                "url": "ftp://x",
                "include_models": ["llama(", "ok"],
                "declared_models": [{"name": "e", "embedding_dimension": 0}],
                "timeout_s": "soon",
                "colour": "red",
            },
        )
        assert bad.status_code == 422
        error = bad.json()["error"]
        assert error["code"] == "invalid_backend"
        assert set(error["fields"]) == {
            "id",
            "type",
            "url",
            "include_models",
            "declared_models.0.embedding_dimension",
            "timeout_s",
            "colour",
        }
        assert "http://" in error["fields"]["url"]
        assert error["fields"]["colour"] == "unknown field"
        assert "regex" in error["fields"]["include_models"]
        assert not store.exists() and c.get("/api/backends").json() == []

        assert c.post("/api/backends", content=b"{not json").status_code == 400
        assert c.post("/api/backends", json=["a list"]).status_code == 400
        assert c.post("/api/backends", json={"url": "http://x"}).json()["error"]["fields"] == {
            "id": "required"
        }

        assert c.post("/api/backends", json={"id": "b", "url": "http://h:1"}).status_code == 201
        before = store.read_bytes()
        patch = c.patch("/api/backends/b", json={"max_concurrency": 0})
        assert patch.status_code == 422 and "max_concurrency" in patch.json()["error"]["fields"]
        rename = c.put("/api/backends/b", json={"id": "c", "url": "http://h:1"})
        assert rename.json()["error"]["fields"]["id"].startswith("does not match the URL")
        dup = c.post("/api/backends", json={"id": "b", "url": "http://h:2"})
        assert dup.status_code == 409 and dup.json()["error"]["code"] == "backend_exists"
        assert store.read_bytes() == before
        assert c.get("/api/backends/b").json()["revision"] == 1


def test_a_stale_revision_gets_409_and_keeps_the_colleagues_edit(gw, store):
    running = gw()
    with api(running) as c:
        c.post("/api/backends", json={"id": "b", "url": "http://10.0.0.1:8000/v1"})
        alice = c.get("/api/backends/b").json()
        bob = c.patch("/api/backends/b", json={"url": "http://10.0.0.2:8000", "revision": 1})
        assert bob.status_code == 200 and bob.json()["revision"] == 2
        conflict = c.put("/api/backends/b", json=alice | {"max_concurrency": 2})
        assert conflict.status_code == 409
        error = conflict.json()["error"]
        assert error["code"] == "revision_conflict"
        assert error["current"]["revision"] == 2
        assert error["current"]["url"] == "http://10.0.0.2:8000/v1"
        assert stored(store)["b"].spec.url == "http://10.0.0.2:8000/v1"
        stale = c.patch("/api/backends/b", json={"enabled": False}, headers={"If-Match": '"1"'})
        assert stale.status_code == 409 and c.get("/api/backends/b").json()["enabled"] is True
        assert c.delete("/api/backends/b", headers={"If-Match": '"1"'}).status_code == 409
        assert c.delete("/api/backends/b", headers={"If-Match": '"2"'}).status_code == 200


def test_the_key_is_write_only_and_kept_unless_a_new_one_is_given(gw, upstream, monkeypatch):
    up = upstream(key="sk-upstream-key-1")
    running = gw()
    with api(running) as c:
        created = c.post(
            "/api/backends", json={"id": "up", "url": up.url, "api_key": "sk-upstream-key-1"}
        ).json()
        assert created["api_key_set"] is True and "api_key" not in created
        healthy(running, "up")
        c.patch("/api/backends/up", json={"timeout_s": "30s"})
        c.put("/api/backends/up", json=c.get("/api/backends/up").json() | {"batch_size": 8})
        reply = sdk(running).chat.completions.create(model="up-chat", messages=MESSAGES)
        assert reply.choices[0].message.content == "Hello from upstream"
        assert up.requests[-1]["auth"] == "Bearer sk-upstream-key-1"  # kept through both
        assert c.get("/api/backends/up").json()["timeout_s"] == 30

        cleared = c.patch("/api/backends/up", json={"api_key": ""}).json()
        assert cleared["api_key_set"] is False
        probe = c.post("/api/backends/up/probe").json()
        assert probe["ok"] is False and "HTTP 401" in probe["error"]

        monkeypatch.setenv("GATEWAYTUI_BACKEND_UP_KEY_FOR_TEST", "sk-upstream-key-1")
        ref = c.patch(
            "/api/backends/up", json={"api_key": "env:GATEWAYTUI_BACKEND_UP_KEY_FOR_TEST"}
        ).json()
        assert (
            ref["api_key_set"] is True
            and ref["api_key_env"] == "GATEWAYTUI_BACKEND_UP_KEY_FOR_TEST"
        )
        assert c.post("/api/backends/up/probe").json()["ok"] is True
        monkeypatch.delenv("GATEWAYTUI_BACKEND_UP_KEY_FOR_TEST")
        missing = c.post("/api/backends/up/probe").json()
        assert missing["ok"] is False and "GATEWAYTUI_BACKEND_UP_KEY_FOR_TEST" in missing["error"]


def test_a_broken_store_file_at_start_is_reported_with_its_line_and_left_alone(store):
    store.write_text("version: 1\nbackends:\n  - id: a\n    url: [unclosed\n", encoding="utf-8")
    before = store.read_bytes()
    config = GatewayConfig.build(backends__store_path=str(store))
    with pytest.raises(BackendStoreError, match=rf"{store}:5:1: invalid YAML"):
        Gateway(config)
    assert store.read_bytes() == before

    store.write_text(
        "version: 1\nbackends:\n- id: a\n  url: http://h:1\n- id: b\n  url: gopher://h\n",
        encoding="utf-8",
    )
    with pytest.raises(BackendStoreError, match=rf"{store}:5: backend 2 \('b'\): url: must start"):
        Gateway(config)


def test_the_cli_refuses_to_start_on_a_broken_store_file(store):
    import subprocess
    import sys

    store.write_text("backends:\n  - id: [a\n", encoding="utf-8")
    before = store.read_bytes()
    done = subprocess.run(
        [sys.executable, "-m", "gatewaytui.cli.main", "serve", "--server-port", "0"],
        env={**os.environ, "BACKENDS_STORE_PATH": str(store)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"cannot load backends: {store}:" in done.stderr and "invalid YAML" in done.stderr
    assert store.read_bytes() == before


def test_an_outside_edit_of_the_file_is_not_overwritten(gw, store):
    running = gw()
    with api(running) as c:
        c.post("/api/backends", json={"id": "b", "url": "http://h:1"})
        outside = store.read_text(encoding="utf-8").replace("http://h:1/v1", "http://h:2/v1")
        store.write_text(outside, encoding="utf-8")
        refused = c.patch("/api/backends/b", json={"enabled": False})
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "store_changed"
        assert store.read_text(encoding="utf-8") == outside
        assert c.get("/api/backends/b").json()["enabled"] is True  # memory matches what was saved


def test_a_failed_write_changes_nothing(make_gateway, tmp_path):
    folder = tmp_path / "state"
    folder.mkdir()
    running = make_gateway(backends__store_path=str(folder / "backends.yaml"))
    folder.rmdir()
    folder.write_text("a file where the store's folder was", encoding="utf-8")
    with api(running) as c:
        refused = c.post("/api/backends", json={"id": "b", "url": "http://h:1"})
        assert refused.status_code == 500 and refused.json()["error"]["code"] == "store_error"
        assert c.get("/api/backends").json() == []


def test_acknowledged_edits_are_there_after_a_restart(make_gateway, store, upstream):
    up = upstream()
    first = make_gateway(backends__store_path=str(store))
    with api(first) as c:
        c.post("/api/backends", json={"id": "up", "url": up.url, "api_key": "sk-kept"})
        c.patch("/api/backends/up", json={"labels": {"edit": "2"}})
    first.stop()
    second = make_gateway(backends__store_path=str(store))
    with api(second) as c:
        again = c.get("/api/backends/up").json()
        assert again["revision"] == 2 and again["labels"] == {"edit": "2"}
        assert again["api_key_set"] is True
    healthy(second, "up")
    assert sdk(second).chat.completions.create(model="up-chat", messages=MESSAGES).choices


# ---- probes and health -------------------------------------------------------------------


def test_probe_lists_models_with_latency_and_a_dry_run_saves_nothing(gw, upstream):
    up = upstream(models=["llama3:8b", "llama3:70b", "nomic-embed-text"])
    other = upstream(models=["other-model"])
    running = gw()
    with api(running) as c:
        c.post("/api/backends", json={"id": "up", "url": up.url, "exclude_models": ["70b$"]})
        probe = c.post("/api/backends/up/probe").json()
        assert probe["ok"] is True and probe["saved"] is True
        assert probe["discovered_models"] == ["llama3:8b", "llama3:70b", "nomic-embed-text"]
        assert probe["models"] == ["llama3:8b", "nomic-embed-text"]  # the exclude regex
        assert probe["latency_ms"] > 0
        assert ProbeResult.model_validate(probe).backend.status is BackendStatus.HEALTHY
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", probe["probed_at"])
        backend = c.get("/api/backends/up").json()
        assert backend["status"] == "healthy" and backend["last_probe_at"]
        assert backend["models"] == ["llama3:8b", "nomic-embed-text"]

        dry = c.post("/api/backends/up/probe", json={"url": other.url}).json()
        assert dry["ok"] is True and dry["saved"] is False and dry["models"] == ["other-model"]
        assert c.get("/api/backends/up").json()["url"] == up.url  # nothing saved

        fresh = c.post("/api/backends/new/probe", json={"url": "http://127.0.0.1:9/v1"}).json()
        assert fresh["ok"] is False and fresh["saved"] is False
        assert fresh["error"] == "GET /v1/models: connection refused"
        assert c.post("/api/backends/new/probe").status_code == 404
        assert c.post("/api/backends/up/probe", json={"url": "nope"}).status_code == 422


def test_an_ollama_backend_is_probed_with_api_tags(gw, upstream):
    up = upstream(models=["llama3.2:3b", "qwen2.5:7b"], ollama=True)
    running = gw()
    with api(running) as c:
        c.post("/api/backends", json={"id": "ollama", "type": "Ollama", "url": up.root})
        probe = c.post("/api/backends/ollama/probe").json()
        assert probe["ok"] is True and probe["models"] == ["llama3.2:3b", "qwen2.5:7b"]
        assert up.requests[-1]["path"] == "/api/tags"
    reply = sdk(running).chat.completions.create(model="qwen2.5:7b", messages=MESSAGES)
    assert reply.choices[0].message.content == "Hello from upstream"


def test_a_failing_backend_leaves_routing_and_returns_when_a_probe_passes(gw, upstream):
    sock = reserve_port()  # refused until the upstream starts on it
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    running = gw(
        backends__probe_interval="50ms",
        backends__failure_threshold=2,
        backends__cooldown="400ms",
        llm__queue_timeout="200ms",
    )
    with api(running) as c:
        spec = {"id": "flaky", "url": url, "declared_models": [{"name": "m"}]}
        assert c.post("/api/backends", json=spec).status_code == 201
        running.wait_for(lambda g: g.backends.records["flaky"].out)
        backend = c.get("/api/backends/flaky").json()
        assert backend["status"] == "unhealthy" and backend["routing"] is False
        assert backend["consecutive_failures"] >= 2
        assert "connection refused" in backend["last_error"]
        assert backend["next_retry_at"] > backend["last_probe_at"]
        state = c.get("/api/state").json()
        assert state["server"]["status"] == "not_ready"
        refused = c.post("/v1/chat/completions", json={"model": "m", "messages": MESSAGES})
        assert refused.status_code == 503  # known model, no capacity: it waited, then gave up

        upstream(sock=sock)
        running.wait_for(lambda g: g.backends.records["flaky"].routing, timeout=10)
        back = c.get("/api/backends/flaky").json()
        assert back["status"] == "healthy" and back["next_retry_at"] is None
        reply = c.post("/v1/chat/completions", json={"model": "m", "messages": MESSAGES})
        assert reply.status_code == 200
        messages = [e["message"] for e in c.get("/api/state").json()["events"]]
        assert any("left routing after 2 failed probes" in m for m in messages)
        assert any("back in routing" in m for m in messages)


# ---- routing -----------------------------------------------------------------------------


def test_the_openai_sdk_reaches_a_backend_through_the_gateway(gw, upstream):
    up = upstream(models=["up-chat", "up-embed"])
    running = gw()
    spec = {
        "id": "up",
        "url": up.url,
        "declared_models": [
            {"name": "capped", "max_output_tokens": 5},
            {"name": "weighted", "token_modifier": 2},
        ],
    }
    with api(running) as c:
        c.post("/api/backends", json=spec)
    healthy(running, "up")
    client = sdk(running)

    reply = client.chat.completions.create(model="up-chat", messages=MESSAGES)
    assert reply.choices[0].message.content == "Hello from upstream"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (7, 3)

    stream = client.chat.completions.create(
        model="up-chat", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "Hello!"
    assert chunks[-1].usage.completion_tokens == 3  # asked for: passed on
    plain = list(client.chat.completions.create(model="up-chat", messages=MESSAGES, stream=True))
    assert all(ch.usage is None for ch in plain)  # not asked for: not passed on
    assert all(b["stream_options"] == {"include_usage": True} for b in up.bodies(
        "/v1/chat/completions") if b.get("stream"))  # fmt: skip

    client.chat.completions.create(model="capped", messages=MESSAGES, max_tokens=100)
    client.chat.completions.create(model="capped", messages=MESSAGES, max_tokens=3)
    client.chat.completions.create(model="capped", messages=MESSAGES)
    sent = [b.get("max_tokens") for b in up.bodies("/v1/chat/completions")[-3:]]
    assert sent == [5, 3, None]  # clamped to the ceiling; smaller and absent left alone

    vectors = client.embeddings.create(model="up-embed", input=["a", "bbb", "cc"])
    assert [d.embedding[0] for d in vectors.data] == [1.0, 3.0, 2.0]

    client.chat.completions.create(model="weighted", messages=MESSAGES)
    with api(running) as c:
        backend = c.get("/api/backends/up").json()
        server = c.get("/api/state").json()["server"]
    # 7 chats x (7 in, 3 out), the weighted one doubled, plus 3 inputs x 2 embedding tokens
    assert backend["requests"] == 8 and backend["failures"] == 0
    assert backend["tokens_in"] == 6 * 7 + 14 + 6 and backend["tokens_out"] == 6 * 3 + 6
    assert backend["embeddings"] == 3
    assert server["tokens_out_total"] == backend["tokens_out"]
    assert server["embeddings_total"] == 3


def test_v1_models_lists_backend_models_and_unknown_models_still_404(gw, upstream):
    up = upstream(models=["up-chat"])
    running = gw()
    with api(running) as c:
        c.post("/api/backends", json={"id": "up", "url": up.url})
        c.post("/api/backends", json={"id": "off", "url": up.url, "enabled": False,
                                      "declared_models": [{"name": "hidden"}]})  # fmt: skip
    healthy(running, "up")
    models = {m.id: m.owned_by for m in sdk(running).models.list()}
    assert models == {"up-chat": "backend:up"}
    with pytest.raises(openai.NotFoundError):
        sdk(running).chat.completions.create(model="hidden", messages=MESSAGES)
    with pytest.raises(openai.NotFoundError):
        sdk(running).chat.completions.create(model="nobody-has-it", messages=MESSAGES)


def test_workers_and_backends_serving_the_same_model_share_the_load(gw, upstream, sim_workers):
    up = upstream(models=["shared"])
    running = gw()
    sim_workers(running, id="sim", concurrency=2, simulate={"models": ["shared"]})
    with api(running) as c:
        c.post("/api/backends", json={"id": "up", "url": up.url, "max_concurrency": 2})
    healthy(running, "up")
    owners = {m.id: m.owned_by for m in sdk(running).models.list()}
    assert set(owners["shared"].split(",")) == {"sim", "backend:up"}
    for _ in range(10):
        sdk(running).chat.completions.create(model="shared", messages=MESSAGES)
    with api(running) as c:
        state = c.get("/api/state").json()
    worker = next(w for w in state["workers"] if w["id"] == "sim")
    backend = state["backends"][0]
    assert worker["processed"] + backend["requests"] == 10
    assert worker["processed"] >= 3 and backend["requests"] >= 3  # least-busy alternates
    (summary,) = [m for m in state["models"] if m["id"] == "shared"]
    assert summary["capacity"] == 4 and set(summary["owned_by"]) == {"sim", "backend:up"}
    assert (summary["workers"], summary["ready_workers"]) == (1, 1)
    assert (summary["backends"], summary["ready_backends"]) == (1, 1)


def test_a_worker_cannot_take_a_backends_name_in_the_scheduler(gw, upstream):
    from support.raw_worker import RawWorker

    up = upstream(models=["m"])
    running = gw()
    with api(running) as c:
        c.post("/api/backends", json={"id": "up", "url": up.url})
    healthy(running, "up")
    impostor = RawWorker(running.ws_url, "backend:up", ["m"], register=False)
    impostor.send({"type": "register", "id": "backend:up", "models": ["m"]})
    assert impostor.closed.wait(5)
    assert impostor.close_code == 4009 and "name backends" in impostor.close_reason
    assert sdk(running).chat.completions.create(model="m", messages=MESSAGES).choices


def test_calls_are_in_flight_jobs_and_a_client_that_leaves_cancels_the_upstream(gw, upstream):
    up = upstream()
    running = gw()
    with api(running) as c:
        c.post("/api/backends", json={"id": "up", "url": up.url})
    healthy(running, "up")
    up.hold = True
    body = {"model": "up-chat", "messages": MESSAGES, "stream": True}
    with (
        httpx.Client(base_url=running.url, timeout=20) as client,
        client.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data:"))
        assert json.loads(first[5:])["choices"][0]["delta"]["role"] == "assistant"
        up.wait_arrived()
        with api(running) as c:
            state = c.get("/api/state").json()
        (job,) = state["jobs"]
        assert job["backend"] == "up" and job["worker"] is None and job["stream"] is True
        assert state["backends"][0]["inflight"] == 1
    # The client closed the stream mid-way: the upstream request is closed too.
    assert up.disconnected.wait(10)
    running.wait_for(lambda g: not g.jobs and g.backends.records["up"].worker.inflight == 0)
    up.release()


def test_deleting_a_backend_lets_its_calls_in_flight_finish(gw, upstream):
    up = upstream()
    running = gw()
    with api(running) as c:
        c.post("/api/backends", json={"id": "up", "url": up.url})
    healthy(running, "up")
    up.hold = True
    results: list = []
    thread = threading.Thread(
        target=lambda: results.append(
            sdk(running).chat.completions.create(model="up-chat", messages=MESSAGES)
        )
    )
    thread.start()
    up.wait_arrived()
    with api(running) as c:
        gone = c.delete("/api/backends/up").json()
        assert gone["details"]["inflight"] == 1
        late = c.post("/v1/chat/completions", json={"model": "up-chat", "messages": MESSAGES})
        assert late.status_code == 404  # out of routing at once
    up.release()
    thread.join(20)
    assert results and results[0].choices[0].message.content == "Hello from upstream"
    running.wait_for(lambda g: not g.jobs)


def test_declared_capabilities_and_dimensions(gw, upstream):
    up = upstream(models=[], dimension=2)
    running = gw()
    spec = {
        "id": "up",
        "url": up.url,
        "declared_models": [
            {"name": "emb", "capabilities": ["embed"], "embedding_dimension": 2},
            {"name": "emb3", "capabilities": ["embed"], "embedding_dimension": 3},
            {"name": "no-stream", "capabilities": ["chat"]},
        ],
    }
    with api(running) as c:
        c.post("/api/backends", json=spec)
    client = sdk(running)
    assert len(client.embeddings.create(model="emb", input="x").data[0].embedding) == 2
    with pytest.raises(openai.BadRequestError, match="declared without chat"):
        client.chat.completions.create(model="emb", messages=MESSAGES)
    with pytest.raises(openai.APIStatusError, match="embedding_dimension 3") as info:
        client.embeddings.create(model="emb3", input="x")
    assert info.value.status_code == 502
    chunks = list(client.chat.completions.create(model="no-stream", messages=MESSAGES, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello from upstream"
    assert not up.bodies("/v1/chat/completions")[-1]["stream"]  # asked without streaming


# ---- durability: a killed gateway never leaves a broken file ------------------------------


def test_a_gateway_killed_while_writing_keeps_every_acknowledged_edit(tmp_path):
    import random
    import signal
    import subprocess
    import sys
    import time

    store = tmp_path / "backends.yaml"
    acknowledged = 0
    for round_ in range(4):
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "gatewaytui.cli.main", "serve", "--server-port", str(port)],
            env={
                **os.environ,
                "BACKENDS_STORE_PATH": str(store),
                "BACKENDS_PROBE_INTERVAL": "1h",
                "SERVER_OPEN": "true",  # the explicit open option: this test is about the store
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=url, timeout=5) as c:
                deadline = time.monotonic() + 30
                while True:  # the process has no readiness signal but its port
                    try:
                        c.get("/healthz")
                        break
                    except httpx.TransportError:
                        if time.monotonic() > deadline or proc.poll() is not None:
                            raise AssertionError("gateway did not start") from None
                        time.sleep(0.05)
                if round_ == 0:
                    c.post("/api/backends", json={"id": "b", "url": "http://h:1"})
                else:  # the last acknowledged edit survived the previous kill
                    labels = c.get("/api/backends/b").json()["labels"]
                    assert int(labels.get("n", 0)) >= acknowledged
                stop = threading.Event()

                def hammer(client=c, stop=stop) -> None:
                    nonlocal acknowledged
                    n = acknowledged
                    while not stop.is_set():
                        n += 1
                        try:
                            ok = client.patch("/api/backends/b", json={"labels": {"n": str(n)}})
                        except httpx.TransportError:
                            return
                        if ok.status_code == 200:
                            acknowledged = n

                before = acknowledged
                writer = threading.Thread(target=hammer)
                writer.start()
                wait_until(lambda: acknowledged > before, what="an acknowledged edit")  # noqa: B023
                time.sleep(random.uniform(0, 0.4))  # then an arbitrary moment mid-writes
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                stop.set()
                writer.join(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        entries = stored(store)  # parses: never a torn file
        assert int(entries["b"].spec.labels["n"]) >= acknowledged > 0
    assert yaml.safe_load(store.read_text(encoding="utf-8"))["version"] == 1


# ---- secrets -----------------------------------------------------------------------------

KEY = "sk-live-7f3a9c1e5b2d48aa-SECRET"
WRONG = "sk-wrong-0d9e8f7a6b5c-OTHERSECRET"


def test_no_response_stream_event_or_log_line_ever_contains_a_key(gw, upstream, caplog):
    from websockets.sync.client import connect

    caplog.set_level("DEBUG")
    up = upstream(key=KEY)  # refuses other keys and echoes them back in its 401
    running = gw(backends__probe_interval="100ms")
    seen: list[str] = []
    stream_closed = threading.Event()

    def follow() -> None:
        with connect(running.ws_url + "/api/state/stream") as ws:
            while not stream_closed.is_set():
                try:
                    seen.append(ws.recv(timeout=0.2))
                except TimeoutError:
                    continue

    follower = threading.Thread(target=follow)
    follower.start()
    try:
        with api(running) as c:

            def keep(response: httpx.Response) -> httpx.Response:
                seen.append(response.text)
                seen.append(json.dumps(dict(response.headers)))
                return response

            spec = {"id": "up", "url": up.url, "api_key": KEY, "declared_models": [{"name": "m"}]}
            keep(c.post("/api/backends", json={**spec, "url": "ftp://nope"}))  # 422 echoes nothing
            keep(c.post("/api/backends", json={**spec, "api_key": f"{KEY} with spaces"}))
            assert keep(c.post("/api/backends", json=spec)).status_code == 201
            healthy(running, "up")
            keep(c.get("/api/backends"))
            keep(c.get("/api/backends/up"))
            keep(c.patch("/api/backends/up", json={"labels": {"a": "b"}}))
            keep(c.put("/api/backends/up", json=c.get("/api/backends/up").json()))
            keep(c.put("/api/backends/up", json={"url": up.url, "revision": 1}))  # 409 + current
            keep(c.post("/api/backends/up/probe"))
            wrong = keep(c.post("/api/backends/up/probe", json={"api_key": WRONG})).json()
            assert wrong["ok"] is False and "[redacted]" in wrong["error"]  # the echo is scrubbed
            keep(c.patch("/api/backends/up", json={"api_key": WRONG}))
            running.wait_for(lambda g: g.backends.records["up"].status is BackendStatus.UNHEALTHY)
            keep(c.post("/v1/chat/completions", json={"model": "m", "messages": MESSAGES}))
            keep(c.patch("/api/backends/up", json={"api_key": KEY}))
            healthy(running, "up")
            keep(c.post("/v1/chat/completions", json={"model": "m", "messages": MESSAGES}))
            keep(c.get("/v1/models"))
            keep(c.get("/api/state"))
            keep(c.get("/api/plugins"))
            keep(c.get("/metrics"))
            running.wait_for(lambda g: g.hub.seq > 3)
    finally:
        stream_closed.set()
        follower.join(10)
    assert any('"backends"' in message for message in seen[:5] if '"snapshot"' in message)
    assert any("[redacted]" in message for message in seen)  # the 401 echo reached the state
    for secret in (KEY, WRONG, KEY[:20], WRONG[:20]):
        assert not [m for m in seen if secret in m], secret
        assert secret not in caplog.text


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("POST", "/api/backends", {"id": 5, "url": ["x"]}),
        ("POST", "/api/backends", {"id": "a", "url": "http://h:1", "labels": "k=v"}),
        ("POST", "/api/backends", {"id": "a", "url": "http://h:1", "declared_models": "m"}),
        ("POST", "/api/backends", {"id": "a", "url": "http://h:1", "timeout_s": True}),
        ("POST", "/api/backends", {"id": "a", "url": "http://h:1", "timeout_s": float("nan")}),
        ("POST", "/api/backends", {"id": "a", "url": "http://h:99999"}),
        ("POST", "/api/backends", {"id": "a", "url": "http://user:pw@h:1"}),
        ("POST", "/api/backends", {"id": "a", "url": "http://h:1", "api_key": 42}),
        ("POST", "/api/backends", {"id": "a", "url": "http://h:1", "api_key": "env:1BAD"}),
        ("POST", "/api/backends", {"id": "a", "url": "http://h:1", "include_models": [None]}),
        ("POST", "/api/backends", {"id": "a" * 64, "url": "http://h:1"}),
        ("PUT", "/api/backends/b", {"url": "http://h:1", "revision": "soon"}),
        ("PUT", "/api/backends/b", {"url": "http://h:1", "revision": True}),
        ("PATCH", "/api/backends/b", {"declared_models": [{"name": "x y"}]}),
        ("PATCH", "/api/backends/b", {"declared_models": [{"name": "m"}, {"name": "m"}]}),
        ("POST", "/api/backends/b/probe", {"url": 3}),
    ],
)
def test_odd_bodies_get_a_4xx_and_the_gateway_carries_on(gw, method, path, body):
    running = gw()
    with api(running) as c:
        c.post("/api/backends", json={"id": "b", "url": "http://h:1"})
        answer = c.request(method, path, content=json.dumps(body))
        assert 400 <= answer.status_code < 500, answer.text
        assert answer.json()["error"]["message"]
        assert c.get("/api/backends/b").json()["revision"] == 1  # nothing changed
        assert [b["id"] for b in c.get("/api/backends").json()] == ["b"]


# ---- the HTTP client itself (backend_http over aiohttp), against the real upstream --------


def call(
    spec: BackendSpec, *, stream: bool
) -> tuple[list[dict], backend_http.UpstreamError | None]:
    """One chat call with a fresh BackendClient: the chunks (or the answer) and the error."""

    async def run() -> tuple[list[dict], backend_http.UpstreamError | None]:
        client = backend_http.BackendClient(spec.max_concurrency)
        got: list[dict] = []
        body = {"model": "up-chat", "messages": MESSAGES, "stream": stream}
        try:
            async with client.use() as session:
                if stream:
                    async for chunk in backend_http.stream_chat(session, spec, body):
                        got.append(chunk)
                else:
                    got.append(
                        await backend_http.post_json(session, spec, "/chat/completions", body)
                    )
        except backend_http.UpstreamError as exc:
            return got, exc
        finally:
            await client.retire()
        return got, None

    return asyncio.run(run())


def test_a_stream_line_longer_than_the_read_buffer_fails_the_call_clearly(upstream):
    up = upstream()
    up.pad_stream = 2 * backend_http.READ_BUFFER_BYTES  # the third chunk's line is longer
    chunks, error = call(BackendSpec(id="long", url=up.url), stream=True)
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["", "Hel"]
    assert error is not None and error.code == "bad_backend_response" and error.status == 502
    assert "longer than" in error.message and "xxxx" not in error.message
    up.pad_stream = backend_http.READ_BUFFER_BYTES  # long, but within the buffer: passes
    chunks, error = call(BackendSpec(id="long", url=up.url), stream=True)
    assert error is None and len(chunks[2]["choices"][0]["delta"]["content"]) > 4_000_000


def test_timeout_s_bounds_the_wait_for_an_answer_or_the_next_chunk(upstream):
    up = upstream()
    spec = BackendSpec(id="slow", url=up.url, timeout_s=0.5)
    up.hold = True  # an answer that never comes: 504 backend_timeout
    _, error = call(spec, stream=False)
    assert error is not None and (error.status, error.code) == (504, "backend_timeout")
    assert error.message == "backend slow did not answer within 0.5s" and not error.retryable
    chunks, error = call(spec, stream=True)  # a stream that stalls after its first chunks
    assert len(chunks) == 2 and error is not None and error.code == "backend_timeout"
    up.release()
    chunks, error = call(spec, stream=True)
    assert error is None and len(chunks) == 5  # role, three contents, finish

    refused = reserve_port()
    _, error = call(
        BackendSpec(id="gone", url=f"http://127.0.0.1:{refused.getsockname()[1]}/v1"), stream=False
    )
    refused.close()
    assert error is not None and error.message == "backend gone unreachable: connection refused"
    assert (error.code, error.retryable) == ("backend_unreachable", True)
