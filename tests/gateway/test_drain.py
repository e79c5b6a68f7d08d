"""Drain and undrain: one worker from the server side, the whole server by API or SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from support.ports import free_port
from support.raw_worker import RawWorker
from support.waiting import WAIT_S, wait_until

MESSAGES = [{"role": "user", "content": "hi"}]


def chat_in_thread(url: str, results: list) -> threading.Thread:
    def run() -> None:
        body = {"model": "m", "messages": MESSAGES}
        results.append(httpx.post(url + "/v1/chat/completions", json=body, timeout=30))

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def worker_state(gw, worker_id: str) -> dict:
    workers = httpx.get(gw.url + "/api/state").json()["workers"]
    return next(w for w in workers if w["id"] == worker_id)


def test_drain_worker_finishes_inflight_takes_no_new_jobs_and_undrains(gateway):
    busy = RawWorker(gateway.ws_url, "busy", ["m"], max_concurrency=4)
    other = RawWorker(gateway.ws_url, "other", ["m"], max_concurrency=4)
    busy.heartbeat()
    other.heartbeat()
    gateway.wait_for(lambda g: g.registry.get("other").status.value == "idle")
    results: list = []
    first = chat_in_thread(gateway.url, results)
    job = busy.next_job()  # least-busy with a tie picks the first registered

    reply = httpx.post(gateway.url + "/api/workers/busy/drain")
    assert reply.status_code == 200
    assert reply.json()["details"] == {"inflight": 1}
    assert busy.others.get(timeout=5) == {"type": "drain", "draining": True}
    drained = worker_state(gateway, "busy")
    assert (
        drained["status"] == "draining" and drained["drain_started_at"] and drained["inflight"] == 1
    )

    second: list = []
    chat_in_thread(gateway.url, second)
    other.reply_chat(other.next_job())  # the new job went to the other worker

    busy.reply_chat(job)  # the in-flight job finishes normally
    first.join(10)
    assert results[0].status_code == 200
    gateway.wait_for(lambda g: g.registry.get("busy").inflight == 0)
    assert worker_state(gateway, "busy")["status"] == "draining"  # not overwritten by idle
    events = [e["kind"] for e in httpx.get(gateway.url + "/api/state").json()["events"]]
    assert "drain" in events and "drained" in events

    assert httpx.post(gateway.url + "/api/workers/busy/undrain").status_code == 200
    assert worker_state(gateway, "busy")["status"] == "idle"
    assert worker_state(gateway, "busy")["drain_started_at"] is None
    third: list = []
    thread = chat_in_thread(gateway.url, third)
    busy.reply_chat(busy.next_job())  # back in rotation (least busy again)
    thread.join(10)
    assert third[0].status_code == 200


def test_drain_errors_are_clear(gateway):
    missing = httpx.post(gateway.url + "/api/workers/ghost/drain")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "no worker with id 'ghost'"
    worker = RawWorker(gateway.ws_url, "w", ["m"])
    worker.close()
    gateway.wait_for(lambda g: g.registry.get("w").status.value == "gone")
    gone = httpx.post(gateway.url + "/api/workers/w/drain")
    assert gone.status_code == 409 and "is gone" in gone.json()["error"]["message"]


def test_worker_drains_itself(make_gateway):
    gateway = make_gateway(llm__queue_timeout="200ms")
    worker = RawWorker(gateway.ws_url, "self", ["m"])
    worker.status(ready=False, draining=True, reason="worker draining (SIGTERM)")
    gateway.wait_for(lambda g: g.registry.get("self").status.value == "draining")
    state = worker_state(gateway, "self")
    assert state["draining"] is True and state["status_reason"] == "worker draining (SIGTERM)"
    assert state["drain_started_at"] is not None  # a self-drain has a start like any drain
    worker.status(ready=True, draining=False)
    gateway.wait_for(lambda g: g.registry.get("self").status.value == "idle")
    assert worker_state(gateway, "self")["drain_started_at"] is None
    worker.status(ready=False, draining=True, reason="worker draining (SIGTERM)")
    gateway.wait_for(lambda g: g.registry.get("self").status.value == "draining")
    missing = httpx.post(
        gateway.url + "/v1/chat/completions", json={"model": "m", "messages": MESSAGES}, timeout=5
    )
    assert missing.status_code == 503  # known model, no worker takes it: queued then timeout
    assert missing.json()["error"]["code"] == "queue_timeout"


def test_server_drain_rejects_new_work_and_undrain_restores(make_gateway):
    gw = make_gateway(llm__queue_timeout="200ms")
    worker = RawWorker(gw.ws_url, "w", ["m"], max_concurrency=2)
    results: list = []
    thread = chat_in_thread(gw.url, results)
    job = worker.next_job()
    reply = httpx.post(gw.url + "/api/server/drain", json={"timeout_s": 30})
    assert reply.status_code == 200 and reply.json()["details"]["inflight"] == 1
    ready = httpx.get(gw.url + "/readyz")
    assert ready.status_code == 503 and ready.json()["status"] == "draining"
    rejected = httpx.post(
        gw.url + "/v1/chat/completions", json={"model": "m", "messages": MESSAGES}
    )
    assert rejected.status_code == 503
    assert rejected.json()["error"]["code"] == "server_draining"
    # Draining is checked before the model: an unknown model is 503 too, not 404.
    unknown = httpx.post(
        gw.url + "/v1/chat/completions", json={"model": "nope", "messages": MESSAGES}
    )
    assert unknown.status_code == 503 and unknown.json()["error"]["code"] == "server_draining"
    embed = httpx.post(gw.url + "/v1/embeddings", json={"model": "nope", "input": "x"})
    assert embed.status_code == 503 and embed.json()["error"]["code"] == "server_draining"
    state = httpx.get(gw.url + "/api/state").json()["server"]
    assert state["status"] == "draining" and state["drain_deadline"]
    worker.reply_chat(job)  # in-flight work still completes
    thread.join(10)
    assert results[0].status_code == 200
    assert httpx.post(gw.url + "/api/server/undrain").status_code == 200
    assert httpx.get(gw.url + "/readyz").status_code == 200
    again: list = []
    thread = chat_in_thread(gw.url, again)
    worker.reply_chat(worker.next_job())
    thread.join(10)
    assert again[0].status_code == 200


def test_actions_need_an_operator_token(make_gateway):
    gw = make_gateway(server__operator_tokens="op", server__viewer_tokens="view")
    RawWorker(gw.ws_url, "w", ["m"])
    url = gw.url + "/api/workers/w/drain"
    assert httpx.post(url).status_code == 401
    viewer = httpx.post(url, headers={"Authorization": "Bearer view"})
    assert viewer.status_code == 403 and "viewer" in viewer.json()["error"]["message"]
    assert httpx.get(gw.url + "/api/state", headers={"Authorization": "Bearer view"}).is_success
    assert httpx.get(gw.url + "/api/state").status_code == 401
    assert httpx.post(url, headers={"Authorization": "Bearer op"}).status_code == 200


# ---- the real process: SIGTERM ------------------------------------------------------------


@pytest.fixture
def serve_gateway():
    """Start `gatewaytui serve` processes (drain timeout as given); killed after the test."""
    procs: list[subprocess.Popen] = []

    def start(drain_timeout: str = "20s") -> tuple[subprocess.Popen, str]:
        port = free_port()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gatewaytui.cli.main",
                "serve",
                "--server-port",
                str(port),
                "--server-drain-timeout",
                drain_timeout,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "SERVER_OPEN": "true"},  # explicit open
        )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    return proc, url
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(proc.stdout.read().decode()) from None
                time.sleep(0.05)  # polling a process that is starting up

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        proc.stdout.close()


@pytest.fixture
def served_gateway(serve_gateway):
    return serve_gateway()


def wait_ready_status(url: str, status: int) -> None:
    """Poll /readyz until it answers `status` (bounded by support.waiting.WAIT_S)."""
    wait_until(
        lambda: httpx.get(url + "/readyz", timeout=WAIT_S).status_code == status,
        what=f"/readyz answering {status}",
        interval=0.02,
    )


def test_sigterm_drains_then_exits(served_gateway):
    proc, url = served_gateway
    worker = RawWorker(url.replace("http", "ws"), "w", ["m"])
    results: list = []
    thread = chat_in_thread(url, results)
    job = worker.next_job()
    proc.send_signal(signal.SIGTERM)
    wait_ready_status(url, 503)
    rejected = httpx.post(url + "/v1/chat/completions", json={"model": "m", "messages": MESSAGES})
    assert rejected.status_code == 503 and rejected.json()["error"]["code"] == "server_draining"
    assert proc.poll() is None  # still waiting for the in-flight job
    worker.reply_chat(job)
    thread.join(10)
    assert results[0].status_code == 200
    assert proc.wait(15) == 0


def test_second_sigterm_exits_at_once(served_gateway):
    proc, url = served_gateway
    worker = RawWorker(url.replace("http", "ws"), "w", ["m"])
    results: list = []
    chat_in_thread(url, results)
    worker.next_job()
    proc.send_signal(signal.SIGTERM)
    wait_ready_status(url, 503)
    proc.send_signal(signal.SIGTERM)
    proc.wait(10)  # well before the 20 s drain timeout would end it (the job is never answered)
    assert "second signal: exiting now" in proc.stdout.read().decode()


def test_sigterm_after_an_undrain_drains_again(served_gateway):
    proc, url = served_gateway
    worker = RawWorker(url.replace("http", "ws"), "w", ["m"])
    results: list = []
    thread = chat_in_thread(url, results)
    job = worker.next_job()
    proc.send_signal(signal.SIGTERM)
    wait_ready_status(url, 503)
    assert httpx.post(url + "/api/server/undrain").status_code == 200
    wait_ready_status(url, 200)
    proc.send_signal(signal.SIGTERM)  # a new first signal: drain, not exit at once
    wait_ready_status(url, 503)
    state = httpx.get(url + "/api/state").json()["server"]
    assert state["draining"] is True and state["inflight"] == 1
    assert proc.poll() is None  # still waiting for the in-flight job
    worker.reply_chat(job)
    thread.join(10)
    assert results[0].status_code == 200
    assert proc.wait(15) == 0


def test_drain_timeout_exits_with_a_job_still_running(serve_gateway):
    proc, url = serve_gateway(drain_timeout="1s")
    worker = RawWorker(url.replace("http", "ws"), "w", ["m"])
    results: list = []
    chat_in_thread(url, results)
    job = worker.next_job()  # held: never answered
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert time.monotonic() - started >= 1.0  # not before its drain timeout
    output = proc.stdout.read().decode()
    assert "drain timeout with 1 job left" in output, output
    assert worker.closed.wait(5)  # the worker's connection ends with the process
    assert job["job_id"]


def test_whoami_names_the_role(make_gateway):
    gw = make_gateway(server__operator_tokens="op", server__viewer_tokens="view")
    assert httpx.get(gw.url + "/api/whoami", headers={"Authorization": "Bearer view"}).json() == {
        "role": "viewer"
    }
    assert httpx.get(gw.url + "/api/whoami", headers={"Authorization": "Bearer op"}).json() == {
        "role": "operator"
    }
    assert httpx.get(gw.url + "/api/whoami").status_code == 401
