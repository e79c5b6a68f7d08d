"""Backends shared by a fleet of three replicas (separate processes, a real redis-server):
an edit through any replica reaches every replica within a second, concurrent edits with one
revision get one 200 and one 409, Redis going away refuses edits clearly and loses nothing
acknowledged, and one replica probes a backend per interval for all of them."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_sync

from support.backend_upstream import Upstream
from support.fleet import RedisServer, Replica, wait_until


@pytest.fixture
def upstream() -> Any:
    up = Upstream(models=["up-chat"], key="sk-upstream")
    yield up
    up.stop()


def _backend(replica: Replica, backend_id: str) -> dict[str, Any] | None:
    response = httpx.get(f"{replica.url}/api/backends/{backend_id}", timeout=5)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return dict(response.json())


def _until_everywhere(
    replicas: list[Replica], check: Any, what: str, timeout: float = 1.0
) -> float:
    """Seconds until `check(replica)` holds on every replica: each replica polled from its
    own thread (bounded), so one slow answer does not delay noticing the others."""
    started = time.monotonic()
    took: dict[str, float] = {}

    def poll(replica: Replica) -> None:
        while time.monotonic() - started <= timeout:
            if check(replica):
                took[replica.id] = time.monotonic() - started
                return

    threads = [threading.Thread(target=poll, args=(r,)) for r in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 10)
    missing = [r.id for r in replicas if r.id not in took]
    assert not missing, f"{what}: not on {missing} after {timeout} s"
    return max(took.values())


def test_backend_edits_through_any_replica_reach_every_replica_within_a_second(
    fleet: Any, upstream: Upstream, tmp_path: Path
) -> None:
    replicas, _ = fleet
    r1, r2, r3 = replicas
    spec = {"id": "shared", "url": upstream.url, "api_key": "sk-upstream", "max_concurrency": 2}
    created = r1.post("/api/backends", json=spec)
    assert created.status_code == 201, created.text
    assert "sk-upstream" not in created.text and created.json()["api_key_set"] is True
    _until_everywhere(  # within 1 s, or it raises
        replicas, lambda r: (_backend(r, "shared") or {}).get("revision") == 1, "created"
    )

    edited = httpx.patch(
        f"{r2.url}/api/backends/shared", json={"labels": {"zone": "b"}, "revision": 1}, timeout=5
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["revision"] == 2

    def edited_here(r: Replica) -> bool:
        backend = _backend(r, "shared") or {}
        return backend.get("revision") == 2 and backend.get("labels") == {"zone": "b"}

    _until_everywhere(replicas, edited_here, "the edit")
    # The stored key went with the spec and still goes only to its URL: a chat through r3
    # reaches the upstream with it; no answer ever shows it.
    wait_until(lambda: (_backend(r3, "shared") or {}).get("status") == "healthy", 10, "healthy")
    chat = r3.post(
        "/v1/chat/completions",
        json={"model": "up-chat", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert chat.status_code == 200, chat.text
    assert upstream.requests[-1]["auth"] == "Bearer sk-upstream"
    moved = httpx.patch(
        f"{r3.url}/api/backends/shared", json={"url": "http://127.0.0.1:9/v1"}, timeout=5
    )
    assert moved.status_code == 422 and "send the key again" in moved.text
    for replica in replicas:
        assert "sk-upstream" not in httpx.get(replica.url + "/api/state", timeout=5).text
    # Each replica keeps a copy of the fleet's backends in its own file (it serves from it
    # if it starts while Redis is down): r3's has the edit made through r2.
    wait_until(lambda: "zone: b" in (tmp_path / "backends-r3.yaml").read_text(), 5, "r3's copy")

    deleted = httpx.delete(f"{r3.url}/api/backends/shared", headers={"If-Match": "2"}, timeout=5)
    assert deleted.status_code == 200, deleted.text
    _until_everywhere(replicas, lambda r: _backend(r, "shared") is None, "the delete")
    events = r1.state()["events"]
    kinds = {(e["kind"], e.get("replica")) for e in events}
    assert {("backend_add", "r1"), ("backend_update", "r2"), ("backend_delete", "r3")} <= kinds
    assert sum(e["kind"] == "backend_update" for e in events) == 1  # once, not per replica


def test_concurrent_edits_with_one_revision_get_one_200_and_one_409(
    fleet: Any, upstream: Upstream
) -> None:
    replicas, _ = fleet
    r1, r2, r3 = replicas
    assert r1.post("/api/backends", json={"id": "race", "url": upstream.url}).status_code == 201
    for round_ in range(1, 6):  # several rounds: the race is real each time
        _until_everywhere(
            replicas, lambda r, n=round_: (_backend(r, "race") or {}).get("revision") == n, "sync"
        )
        start = threading.Barrier(2)
        answers: dict[str, httpx.Response] = {}

        def edit(
            replica: Replica,
            n: int = round_,
            start: threading.Barrier = start,
            answers: dict[str, httpx.Response] = answers,
        ) -> None:
            body = {"labels": {"by": replica.id, "round": str(n)}, "revision": n}
            with httpx.Client(timeout=10) as client:
                start.wait()
                answers[replica.id] = client.patch(f"{replica.url}/api/backends/race", json=body)

        threads = [threading.Thread(target=edit, args=(r,)) for r in (r2, r3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(15)
        statuses = sorted(a.status_code for a in answers.values())
        assert statuses == [200, 409], {k: v.text[-200:] for k, v in answers.items()}
        winner = next(k for k, v in answers.items() if v.status_code == 200)
        loser = answers[next(k for k in answers if k != winner)].json()["error"]
        assert loser["code"] == "revision_conflict"
        assert loser["current"]["revision"] == round_ + 1
        assert loser["current"]["labels"] == {"by": winner, "round": str(round_)}

        def won(r: Replica, n: int = round_, w: str = winner) -> bool:
            backend = _backend(r, "race") or {}
            labels = {"by": w, "round": str(n)}
            return backend.get("revision") == n + 1 and backend.get("labels") == labels

        _until_everywhere(replicas, won, "the winner's edit")


def test_redis_down_refuses_edits_clearly_and_loses_nothing_acknowledged(
    fleet: Any, redis: RedisServer, upstream: Upstream
) -> None:
    replicas, _ = fleet
    r1, r2, r3 = replicas
    spec = {"id": "kept", "url": upstream.url, "api_key": "sk-upstream"}
    assert r1.post("/api/backends", json=spec).status_code == 201
    _until_everywhere(replicas, lambda r: _backend(r, "kept") is not None, "created")
    wait_until(lambda: (_backend(r2, "kept") or {}).get("status") == "healthy", 10, "healthy")

    redis.stop()
    wait_until(lambda: r2.state()["server"]["cluster"] == "degraded", 10, "r2 degraded")
    refused = httpx.patch(f"{r2.url}/api/backends/kept", json={"labels": {"x": "y"}}, timeout=5)
    assert refused.status_code == 503, refused.text
    error = refused.json()["error"]
    assert error["code"] == "cluster_unavailable" and "not made" in error["message"]
    added = r2.post("/api/backends", json={"id": "new", "url": upstream.url})
    assert added.status_code == 503
    assert _backend(r2, "kept")["revision"] == 1  # type: ignore[index]
    assert _backend(r2, "new") is None
    # Traffic goes on: r2 serves the backend it has.
    chat = r2.post(
        "/v1/chat/completions",
        json={"model": "up-chat", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert chat.status_code == 200, chat.text

    redis.start()  # same port, empty: the replicas write their backends back
    client = redis_sync.Redis.from_url(redis.url, decode_responses=True)
    try:
        wait_until(lambda: client.hget("gatewaytui:backends", "kept"), 10, "reseeded")
        for replica in replicas:  # an edit needs its replica to be back in the fleet
            wait_until(lambda r=replica: r.state()["server"]["cluster"] == "ok", 10, "back")
        stored = client.hget("gatewaytui:backends", "kept") or ""
        assert '"revision":1' in stored
    finally:
        client.close()
    edited = httpx.patch(
        f"{r3.url}/api/backends/kept", json={"labels": {"x": "y"}, "revision": 1}, timeout=5
    )
    assert edited.status_code == 200, edited.text
    _until_everywhere(
        replicas, lambda r: (_backend(r, "kept") or {}).get("labels") == {"x": "y"}, "edit"
    )


def test_one_replica_probes_a_backend_per_interval(
    redis: RedisServer, procs: list[Any], tmp_path: Path, upstream: Upstream
) -> None:
    interval = ("--backends-probe-interval", "1s")
    replicas = [Replica(f"r{i}", redis.url, tmp_path, *interval) for i in (1, 2, 3)]
    procs.extend(replicas)
    r1 = replicas[0]
    spec = {"id": "p", "url": upstream.url, "api_key": "sk-upstream"}
    assert r1.post("/api/backends", json=spec).status_code == 201

    def healthy(r: Replica) -> bool:
        backend = _backend(r, "p") or {}
        return backend.get("status") == "healthy" and backend.get("models") == ["up-chat"]

    _until_everywhere(replicas, healthy, "the shared probe result", timeout=10)

    def probes() -> int:
        return sum(1 for request in list(upstream.requests) if request["path"] == "/v1/models")

    before = probes()
    time.sleep(4.0)  # a measured window, not a synchronisation: count what happens in it
    during = probes() - before
    # One replica per 1 s interval: about 4 probes (each of three replicas alone: about 12).
    assert 2 <= during <= 6, during
    for replica in replicas:
        assert healthy(replica)
    probed_at = {(_backend(r, "p") or {}).get("last_probe_at") for r in replicas}
    assert len(probed_at) <= 2  # the same shared result (one may be a probe newer)


def test_fleet_events_are_one_stream_a_replica_that_joins_later_reads_too(
    redis: RedisServer, procs: list[Any], tmp_path: Path, upstream: Upstream
) -> None:
    r1 = Replica("r1", redis.url, tmp_path)
    procs.append(r1)
    assert r1.post("/api/backends", json={"id": "early", "url": upstream.url}).status_code == 201
    client = redis_sync.Redis.from_url(redis.url, decode_responses=True)
    try:

        def in_stream() -> list[dict[str, Any]]:
            entries = client.xrange("gatewaytui:events")
            return [json.loads(fields["e"]) for _, fields in entries]  # type: ignore[index]

        added = wait_until(
            lambda: [e for e in in_stream() if e["kind"] == "backend_add"], 5, "the event"
        )
        assert added[0]["replica"] == "r1"
        # A replica that joins later shows the fleet's recent events, each with its replica.
        r3 = Replica("r3", redis.url, tmp_path)
        procs.append(r3)
        events = wait_until(
            lambda: [e for e in r3.state()["events"] if e["kind"] == "backend_add"], 5, "r3"
        )
        assert events[0]["replica"] == "r1" and "early" in events[0]["message"]
    finally:
        client.close()


def test_first_start_seeds_redis_from_the_file_and_a_missed_message_heals(
    redis: RedisServer, procs: list[Any], tmp_path: Path
) -> None:
    def backends_file(name: str, backend_id: str) -> None:
        text = f"version: 1\nbackends:\n- id: {backend_id}\n  url: http://127.0.0.1:9/v1\n"
        (tmp_path / f"backends-{name}.yaml").write_text(text)

    backends_file("r1", "from-file")
    backends_file("r2", "only-local")
    client = redis_sync.Redis.from_url(redis.url, decode_responses=True)
    try:
        r1 = Replica("r1", redis.url, tmp_path)  # Redis is empty: r1's file seeds it
        procs.append(r1)
        wait_until(lambda: client.hget("gatewaytui:backends", "from-file"), 5, "seeded")
        assert any(e["kind"] == "backend_seed" for e in r1.state()["events"])
        r2 = Replica("r2", redis.url, tmp_path)  # joins a seeded fleet: takes its backends
        procs.append(r2)
        wait_until(lambda: _backend(r2, "from-file"), 5, "the fleet's backend on r2")
        assert _backend(r2, "only-local") is None
        copy = tmp_path / "backends-r2.yaml"
        wait_until(lambda: "from-file" in copy.read_text(), 5, "r2's copy")
        assert "only-local" not in copy.read_text()
        assert client.hget("gatewaytui:backends", "only-local") is None

        # An edit whose announcement nobody heard (written without PUBLISH): the replicas'
        # version check picks it up within about a second.
        doc = {"id": "quiet", "revision": 1, "url": "http://127.0.0.1:9/v1", "enabled": True}
        client.hset("gatewaytui:backends", "quiet", json.dumps(doc))
        client.incr("gatewaytui:backends-version")
        _until_everywhere([r1, r2], lambda r: _backend(r, "quiet") is not None, "healed", 2.0)
    finally:
        client.close()
