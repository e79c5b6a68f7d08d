"""Requests across replicas: a model served only by workers on another replica is reached
through any replica, streaming included, with the official `openai` SDK as the client."""

from __future__ import annotations

from typing import Any

import httpx
import openai

from support.fleet import Process, Replica, Worker, wait_until


def _sees_model(replica: Any, model: str) -> bool:
    return any(m["id"] == model and m["ready_workers"] for m in replica.state()["models"])


def test_chat_and_embeddings_reach_a_model_on_another_replica(fleet: Any) -> None:
    replicas, worker = fleet
    r1, r2, r3 = replicas
    worker("w1", r1, "--models", "only-on-r1")
    wait_until(lambda: _sees_model(r3, "only-on-r1"), 15, "r3 to see the model on r1")
    client = openai.OpenAI(base_url=r3.url + "/v1", api_key="unused", max_retries=0)

    answer = client.chat.completions.create(
        model="only-on-r1", messages=[{"role": "user", "content": "hello fleet"}]
    )
    assert answer.choices[0].message.content

    stream = client.chat.completions.create(
        model="only-on-r1",
        messages=[{"role": "user", "content": "stream it"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0

    vectors = client.embeddings.create(model="only-on-r1", input=["a", "b", "c"])
    assert [d.index for d in vectors.data] == [0, 1, 2]

    models = {m.id for m in client.models.list()}
    assert "only-on-r1" in models

    raw = httpx.post(
        r2.url + "/v1/chat/completions",
        json={"model": "only-on-r1", "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )
    assert raw.status_code == 200 and raw.headers["x-gatewaytui-replica"] == "r1"
    # The jobs ran on r1 (the owner of the worker), whichever replica took the request.
    state = r1.state()
    assert state["server"]["requests_total"] >= 4
    # An unknown model is still a clean OpenAI-format 404 from any replica.
    missing = httpx.post(
        r2.url + "/v1/chat/completions",
        json={"model": "nowhere", "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


def test_a_forwarded_request_is_never_forwarded_again(fleet: Any) -> None:
    replicas, worker = fleet
    r1, r2, _ = replicas
    worker("w1", r1, "--models", "only-on-r1")
    wait_until(lambda: _sees_model(r2, "only-on-r1"), 15, "r2 to see the model on r1")
    looped = httpx.post(
        r2.url + "/v1/chat/completions",
        json={"model": "only-on-r1", "messages": [{"role": "user", "content": "hi"}]},
        headers={"X-Gatewaytui-Forwarded-By": "r3"},
        timeout=10,
    )
    assert looped.status_code == 404  # served here: r2 has no worker for it


def test_no_404_for_a_model_still_served_when_a_replica_dies(fleet: Any) -> None:
    """r2 (no worker of its own) forwards m-fleet to r1 or r3. SIGKILL r3 under that traffic:
    until r3's registration expires r2 still sees it, but a refused connection makes r2 try
    r1 instead; no request may answer 404 for a model the fleet still serves."""
    import signal

    from support.fleet import Traffic

    replicas, worker = fleet
    r1, r2, r3 = replicas
    worker("w1", r1)
    worker("w3", r3)

    def both_serve() -> bool:
        model = next((m for m in r2.state()["models"] if m["id"] == "m-fleet"), None)
        return model is not None and model["ready_workers"] == 2

    wait_until(both_serve, 15, "r2 to see m-fleet on r1 and r3")
    loads = [Traffic(r2.url, "m-fleet"), Traffic(r2.url, "m-fleet", stream=True)]
    wait_until(lambda: all(t.ok >= 5 for t in loads), 10, "traffic before the kill")
    r3.signal(signal.SIGKILL)
    r3.proc.wait(5)
    served = sum(t.ok for t in loads)
    wait_until(lambda: {r["id"] for r in r2.state()["replicas"]} == {"r1", "r2"}, 10, "r3 to leave")
    wait_until(lambda: sum(t.ok for t in loads) >= served + 20, 15, "traffic after the kill")
    failed = [f for t in loads for f in t.stop().failed]
    assert not [f for f in failed if f.startswith("404")], failed[:3]
    # Only what was in flight on r3 when it died may fail (its connection died with it).
    assert all("replica_failed" in f for f in failed), failed[:3]
    assert len(failed) <= 2, failed


def test_a_model_only_on_a_dead_replica_is_503_until_the_fleet_forgets_it(fleet: Any) -> None:
    """While r2 still counts the SIGKILLed r3 as alive, a request for a model only r3
    served is a retryable 503 (not a 404, not a hang); once r3 expired it is a 404."""
    import signal

    replicas, worker = fleet
    _, r2, r3 = replicas
    worker("w3", r3, "--models", "only-on-r3")
    wait_until(lambda: _sees_model(r2, "only-on-r3"), 15, "r2 to see the model on r3")
    r3.signal(signal.SIGKILL)
    r3.proc.wait(5)
    body = {"model": "only-on-r3", "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(3):  # the first finds r3 refusing, the next ones skip it
        response = httpx.post(r2.url + "/v1/chat/completions", json=body, timeout=10)
        # The model was in r2's view during the request (it still is after it): never a 404.
        if _sees_model(r2, "only-on-r3"):
            assert response.status_code == 503, (response.text, dict(response.headers))
            assert response.json()["error"]["code"] == "replica_unavailable"
        else:
            assert response.status_code in (503, 404), response.text
    wait_until(lambda: "r3" not in {r["id"] for r in r2.state()["replicas"]}, 10, "r3 to leave")
    gone = httpx.post(r2.url + "/v1/chat/completions", json=body, timeout=10)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "model_not_found"


def test_a_dead_replicas_address_taken_by_another_gateway_is_not_forwarded_to(
    redis: Any, procs: list[Any], tmp_path: Any
) -> None:
    """A new process on a dead replica's IP and port (a new pod, a reused port) is not that
    replica: it refuses a request forwarded to r3 (421), and r2 answers a retryable 503 for
    the model only r3 served, not the stranger's 404."""
    import signal

    ttl = ("--cluster-replica-ttl", "60s")  # r2 holds on to r3 for the whole test
    r2 = Replica("r2", redis.url, tmp_path, *ttl)
    r3 = Replica("r3", redis.url, tmp_path, *ttl)
    procs.extend([r2, r3])
    procs.append(Worker("w3", r3, tmp_path, "--models", "only-on-r3"))
    wait_until(lambda: _sees_model(r2, "only-on-r3"), 15, "r2 to see the model on r3")
    r3.signal(signal.SIGKILL)
    r3.proc.wait(5)
    stranger = Process(
        ["--log-level", "warning", "serve", "--server-port", str(r3.port)],
        tmp_path / "stranger.log",
    )
    procs.append(stranger)

    def answers() -> bool:  # wait_until takes a refused connection as "not yet"
        assert stranger.alive(), stranger.output()
        return httpx.get(r3.url + "/healthz", timeout=1).status_code == 200

    wait_until(answers, 30, "the stranger to serve on r3's port")
    body = {"model": "only-on-r3", "messages": [{"role": "user", "content": "hi"}]}
    misdirected = httpx.post(
        r3.url + "/v1/chat/completions",
        json=body,
        headers={"X-Gatewaytui-Forwarded-By": "r2", "X-Gatewaytui-Forward-To": "r3"},
        timeout=10,
    )
    assert misdirected.status_code == 421, misdirected.text
    assert misdirected.json()["error"]["code"] == "misdirected_request"
    for _ in range(2):  # the first finds the stranger, the next one skips r3
        response = httpx.post(r2.url + "/v1/chat/completions", json=body, timeout=10)
        assert response.status_code == 503, (response.text, dict(response.headers))
        assert response.json()["error"]["code"] == "replica_unavailable"
    assert _sees_model(r2, "only-on-r3")  # r3 was still in r2's view all along
