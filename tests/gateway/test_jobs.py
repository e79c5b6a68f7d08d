"""In-flight jobs: tracking, cancel, client disconnect, worker loss, timeouts, chunk retry."""

from __future__ import annotations

import asyncio
import json
import queue
import socket
import threading
import time

import httpx
import openai
import pytest

from support.raw_worker import RawWorker, vector_for

MESSAGES = [{"role": "user", "content": "hi"}]


def chat_in_thread(gw, results: list, **body) -> threading.Thread:
    def run() -> None:
        results.append(
            httpx.post(
                gw.url + "/v1/chat/completions",
                json={"model": "m", "messages": MESSAGES, **body},
                timeout=20,
            )
        )

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def jobs(gw) -> list[dict]:
    return httpx.get(gw.url + "/api/state").json()["jobs"]


def test_inflight_job_is_tracked_in_state(gateway):
    worker = RawWorker(gateway.ws_url, "w", ["m"])
    results: list = []
    thread = chat_in_thread(gateway, results)
    job_frame = worker.next_job()
    (job,) = jobs(gateway)
    assert job["id"] == job_frame["job_id"]
    assert (job["kind"], job["model"], job["worker"], job["stream"]) == ("chat", "m", "w", False)
    assert job["client"].startswith("127.0.0.1:")
    assert job["state"] == "running"
    worker.reply_chat(job_frame)
    thread.join(10)
    assert results[0].status_code == 200 and jobs(gateway) == []


def test_streaming_job_counts_tokens_so_far(gateway):
    worker = RawWorker(gateway.ws_url, "w", ["m"])
    lines: list[str] = []
    done = threading.Event()

    def run() -> None:
        body = {"model": "m", "messages": MESSAGES, "stream": True}
        with httpx.stream("POST", gateway.url + "/v1/chat/completions", json=body) as r:
            lines.extend(line for line in r.iter_lines() if line)
        done.set()

    threading.Thread(target=run).start()
    job_frame = worker.next_job()
    for word in ("a", "b", "c"):
        worker.chunk(job_frame, word)
    gateway.wait_for(lambda g: next(iter(g.jobs.values())).tokens_out == 3)
    (job,) = jobs(gateway)
    assert job["stream"] is True and job["tokens_out"] == 3
    worker.finish_stream(job_frame, 3)
    assert done.wait(10)
    assert lines[-1] == "data: [DONE]" and len(lines) == 4


def test_operator_cancels_a_job(gateway):
    worker = RawWorker(gateway.ws_url, "w", ["m"])
    results: list = []
    thread = chat_in_thread(gateway, results)
    job_frame = worker.next_job()
    reply = httpx.post(gateway.url + f"/api/jobs/{job_frame['job_id']}/cancel")
    assert reply.status_code == 200 and reply.json()["ok"] is True
    assert worker.cancels.get(timeout=20)["job_id"] == job_frame["job_id"]
    thread.join(10)
    assert results[0].status_code == 503
    assert results[0].json()["error"]["code"] == "job_cancelled"
    assert jobs(gateway) == []
    gateway.wait_for(lambda g: g.registry.get("w").inflight == 0)


def test_cancel_unknown_job_is_404(gateway):
    reply = httpx.post(gateway.url + "/api/jobs/nope/cancel")
    assert reply.status_code == 404
    assert "no in-flight job with id 'nope'" in reply.json()["error"]["message"]


def test_operator_cancels_a_stream_with_an_error_event(gateway):
    worker = RawWorker(gateway.ws_url, "w", ["m"])
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
    stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    job_frame = worker.next_job()
    worker.chunk(job_frame, "partial")
    first = next(iter(stream))
    assert first.choices[0].delta.content == "partial"
    httpx.post(gateway.url + f"/api/jobs/{job_frame['job_id']}/cancel").raise_for_status()
    with pytest.raises(openai.APIError, match="cancelled"):
        list(stream)
    assert worker.cancels.get(timeout=20)["job_id"] == job_frame["job_id"]


@pytest.mark.parametrize("stream", [False, True])
def test_client_disconnect_cancels_on_the_worker(gateway, stream):
    worker = RawWorker(gateway.ws_url, "w", ["m"])
    body = json.dumps({"model": "m", "messages": MESSAGES, "stream": stream}).encode()
    sock = socket.create_connection(("127.0.0.1", gateway.port))
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    job_frame = worker.next_job()
    if stream:
        worker.chunk(job_frame, "x")
        received = b""
        while b"data:" not in received:
            received += sock.recv(65536)
    sock.close()  # the client goes away mid-request
    assert worker.cancels.get(timeout=20)["job_id"] == job_frame["job_id"]
    gateway.wait_for(lambda g: not g.jobs and g.registry.get("w").inflight == 0)


def test_worker_lost_mid_job_non_stream_is_retried_elsewhere(gateway):
    doomed = RawWorker(gateway.ws_url, "doomed", ["m"])
    results: list = []
    thread = chat_in_thread(gateway, results)
    job_frame = doomed.next_job()
    backup = RawWorker(gateway.ws_url, "backup", ["m"])
    doomed.close()
    retry = backup.next_job()
    assert retry["job_id"] == job_frame["job_id"] + ".2"
    backup.reply_chat(retry, "rescued")
    thread.join(10)
    assert results[0].status_code == 200
    assert results[0].json()["choices"][0]["message"]["content"] == "rescued"
    events = httpx.get(gateway.url + "/api/state").json()["events"]
    assert any(e["kind"] == "retry" for e in events)


def test_worker_lost_mid_stream_ends_with_an_error_event(gateway):
    worker = RawWorker(gateway.ws_url, "w", ["m"])
    RawWorker(gateway.ws_url, "spare", ["m"])
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
    stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    job_frame = worker.next_job()
    worker.chunk(job_frame, "half")
    assert next(iter(stream)).choices[0].delta.content == "half"
    worker.close()
    with pytest.raises(openai.APIError, match="lost"):
        list(stream)


def test_request_timeout_answers_504_and_cancels(make_gateway):
    gw = make_gateway(llm__request_timeout="400ms")
    worker = RawWorker(gw.ws_url, "slow", ["m"])
    results: list = []
    thread = chat_in_thread(gw, results)
    job_frame = worker.next_job()
    thread.join(10)
    assert results[0].status_code == 504
    assert results[0].json()["error"]["code"] == "request_timeout"
    assert worker.cancels.get(timeout=20)["job_id"] == job_frame["job_id"]
    state = httpx.get(gw.url + "/api/state").json()
    assert state["workers"][0]["failures"] == 1
    message = "worker slow did not finish within the request timeout (0.4s)"
    assert state["workers"][0]["last_error"] == message
    assert results[0].json()["error"]["message"] == message


def test_worker_error_is_passed_to_the_client(gateway):
    worker = RawWorker(gateway.ws_url, "w", ["m"])
    results: list = []
    thread = chat_in_thread(gateway, results)
    worker.error(worker.next_job(), "CUDA out of memory", status=500)
    thread.join(10)
    assert results[0].status_code == 500
    assert results[0].json()["error"]["message"] == "CUDA out of memory"
    state = httpx.get(gateway.url + "/api/state").json()
    assert state["workers"][0]["last_error"] == "CUDA out of memory"


def embeddings_in_thread(gw, results: list, texts: list[str]) -> threading.Thread:
    def run() -> None:
        body = {"model": "e", "input": texts}
        results.append(httpx.post(gw.url + "/v1/embeddings", json=body, timeout=20))

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_failed_embedding_chunk_is_retried_on_another_worker(gateway):
    flaky = RawWorker(gateway.ws_url, "flaky", ["e"], batch_size=4)
    steady = RawWorker(gateway.ws_url, "steady", ["e"], batch_size=4)
    texts = [f"t{i}" * (i + 1) for i in range(8)]
    results: list = []
    thread = embeddings_in_thread(gateway, results, texts)
    failed = flaky.next_job()  # one slot each: each worker gets one of the two chunks
    served = steady.next_job()
    assert {tuple(failed["body"]["input"]), tuple(served["body"]["input"])} == {
        tuple(texts[:4]),
        tuple(texts[4:]),
    }
    flaky.error(failed, "transient")
    steady.reply_embeddings(served)
    retry = steady.next_job()  # the failed chunk goes to the worker that did not fail it
    assert retry["body"]["input"] == failed["body"]["input"]
    assert retry["job_id"] not in (failed["job_id"], served["job_id"])
    (job,) = jobs(gateway)  # progress is live state while the retry runs
    assert job["partition"] == {
        "total_items": 8,
        "done_items": 4,
        "chunks_done": 1,
        "chunks_inflight": 1,
        "chunks_failed": 1,
    }
    assert sorted(job["workers"]) == ["flaky", "steady"] and job["worker"] == "steady"
    steady.reply_embeddings(retry)
    thread.join(10)
    assert results[0].status_code == 200
    vectors = [d["embedding"] for d in results[0].json()["data"]]
    assert vectors == [vector_for(t) for t in texts]
    assert flaky.frames.empty()  # never asked again
    state = httpx.get(gateway.url + "/api/state").json()
    by_id = {w["id"]: w for w in state["workers"]}
    assert by_id["flaky"]["failures"] == 1 and by_id["flaky"]["last_error"] == "transient"
    assert by_id["steady"]["embeddings"] == 8


def test_max_parallel_embeddings_caps_chunks_in_flight(make_gateway):
    gw = make_gateway(llm__max_parallel_embeddings=2)
    worker = RawWorker(gw.ws_url, "w", ["e"], max_concurrency=8, batch_size=1)
    texts = [f"text {i}" for i in range(6)]
    results: list = []
    thread = embeddings_in_thread(gw, results, texts)
    open_chunks = [worker.next_job(), worker.next_job()]
    answered = 0
    while open_chunks:
        # The worker has 8 free slots, but no more than 2 chunks are ever out at once.
        with pytest.raises(queue.Empty):
            worker.next_job(timeout=0.3)
        assert gw.sync(lambda: gw.gateway.registry.get("w").inflight) == len(open_chunks)
        (job,) = jobs(gw)
        assert job["partition"]["chunks_inflight"] == len(open_chunks)
        assert job["partition"]["done_items"] == answered
        worker.reply_embeddings(open_chunks.pop(0))
        answered += 1
        if answered + len(open_chunks) < len(texts):
            open_chunks.append(worker.next_job())
    thread.join(10)
    assert results[0].status_code == 200
    assert [d["embedding"] for d in results[0].json()["data"]] == [vector_for(t) for t in texts]


def test_client_disconnect_cancels_every_open_embeddings_chunk(gateway):
    worker = RawWorker(gateway.ws_url, "w", ["e"], max_concurrency=2, batch_size=2)
    body = json.dumps({"model": "e", "input": ["a", "b", "c", "d"]}).encode()
    sock = socket.create_connection(("127.0.0.1", gateway.port))
    sock.sendall(
        b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    chunks = {worker.next_job()["job_id"], worker.next_job()["job_id"]}
    gateway.wait_for(lambda g: g.registry.get("w").inflight == 2)
    sock.close()  # the client goes away while both chunks are computing
    cancelled = {worker.cancels.get(timeout=20)["job_id"], worker.cancels.get(timeout=20)["job_id"]}
    assert cancelled == chunks
    gateway.wait_for(lambda g: not g.jobs and g.registry.get("w").inflight == 0)
    assert worker.cancels.empty() and worker.frames.empty()


def test_chunk_failing_for_good_cancels_the_other_chunks_on_their_workers(make_gateway):
    gw = make_gateway(llm__embedding_chunk_attempts=1)
    worker = RawWorker(gw.ws_url, "w", ["e"], max_concurrency=2, batch_size=2)
    results: list = []
    thread = embeddings_in_thread(gw, results, ["a", "b", "c", "d"])
    first, second = worker.next_job(), worker.next_job()
    worker.error(first, "GPU fell off the bus")
    assert worker.cancels.get(timeout=20)["job_id"] == second["job_id"]
    thread.join(10)
    assert results[0].status_code == 502
    assert "GPU fell off the bus" in results[0].json()["error"]["message"]
    gw.wait_for(lambda g: not g.jobs and g.registry.get("w").inflight == 0)
    assert worker.cancels.empty()  # the failed chunk itself is not cancelled


# ---- one deadline per request (llm.request_timeout) ----------------------------------------


def timed_chat(gw, results: list, **body) -> threading.Thread:
    """A chat in a thread; appends (response, `time.monotonic()` when it came back)."""

    def run() -> None:
        reply = httpx.post(
            gw.url + "/v1/chat/completions",
            json={"model": "m", "messages": MESSAGES, **body},
            timeout=20,
        )
        results.append((reply, time.monotonic()))

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def deadline_of(gw, job: dict | None = None, *, queued: bool = False) -> float:
    """The gateway's deadline (`time.monotonic()`, the same clock as this process's) for the
    request a worker's `job` belongs to (a retry's id is the request's plus `.N`), or for the
    one request still waiting in the queue."""
    if queued:
        (request,) = [j for j in gw.gateway.jobs.values() if not j.assignments]
    else:
        (request,) = [
            j
            for j in gw.gateway.jobs.values()
            if job["job_id"] == j.id or job["job_id"].startswith(j.id + ".")
        ]
    return request.deadline


def dribble(worker: RawWorker, job: dict, every: float = 0.1, limit: int = 60) -> dict | None:
    """Send a chunk every `every` seconds until the gateway cancels the job (returns the
    cancel frame) or `limit` chunks went out (then finishes the stream, returns None)."""
    for i in range(limit):
        try:
            return worker.cancels.get(timeout=every)
        except queue.Empty:
            worker.chunk(job, f"w{i} ")
    worker.finish_stream(job, limit)
    return None


def test_dribbling_stream_ends_at_the_request_deadline(make_gateway):
    gw = make_gateway(llm__request_timeout="1s")
    worker = RawWorker(gw.ws_url, "w", ["m"])
    lines: list[str] = []
    ended: list[float] = []

    def run() -> None:
        body = {"model": "m", "messages": MESSAGES, "stream": True}
        with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, timeout=20) as r:
            lines.extend(line for line in r.iter_lines() if line)
        ended.append(time.monotonic())

    client = threading.Thread(target=run)
    client.start()
    job = worker.next_job()
    deadline = gw.sync(lambda: deadline_of(gw, job))
    # A chunk every 0.1s for up to 6s: no gap ever reaches the timeout, so only the request's
    # deadline can end it (a cancel comes); the stream would otherwise finish normally.
    cancel = dribble(worker, job)
    client.join(10)
    assert cancel is not None and cancel["job_id"] == job["job_id"]
    assert ended[0] >= deadline
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert len(chunks) >= 4 and all(c["object"] == "chat.completion.chunk" for c in chunks)
    error = json.loads(lines[-1][6:])["error"]  # no [DONE]: the stream failed
    assert error["code"] == "request_timeout"
    assert error["message"] == "worker w did not finish within the request timeout (1s)"
    gw.wait_for(lambda g: not g.jobs and g.registry.get("w").inflight == 0)


def test_queue_wait_counts_against_the_request_deadline(make_gateway):
    gw = make_gateway(llm__request_timeout="2s", llm__queue_timeout="30s")
    worker = RawWorker(gw.ws_url, "w", ["m"], max_concurrency=1)
    first: list = []
    thread_a = chat_in_thread(gw, first)
    job_a = worker.next_job()
    second: list = []
    thread_b = timed_chat(gw, second)
    gw.wait_for(lambda g: len(g.queue.waiters) == 1)
    deadline = gw.sync(lambda: deadline_of(gw, queued=True))
    # B waits in the queue, then gets the worker, which never answers it.
    with pytest.raises(queue.Empty):
        worker.next_job(timeout=1.2)
    worker.reply_chat(job_a)
    job_b = worker.next_job()
    # The deadline B got on arrival still holds now that it runs: no fresh one per stage.
    assert gw.sync(lambda: deadline_of(gw, job_b)) == deadline
    thread_a.join(10)
    thread_b.join(10)
    assert first[0].status_code == 200
    reply, ended = second[0]
    assert reply.status_code == 504 and reply.json()["error"]["code"] == "request_timeout"
    assert ended >= deadline  # ended by that deadline, not before it
    assert worker.cancels.get(timeout=20)["job_id"] == job_b["job_id"]
    gw.wait_for(lambda g: not g.jobs and g.registry.get("w").inflight == 0)


def test_queue_wait_past_the_deadline_is_a_504(make_gateway):
    gw = make_gateway(llm__request_timeout="500ms", llm__queue_timeout="30s")
    worker = RawWorker(gw.ws_url, "w", ["m"])
    worker.status(ready=False, reason="loading weights")  # known model, no slot: B queues
    gw.wait_for(lambda g: g.registry.get("w").status.value == "not_ready")
    results: list = []
    thread = timed_chat(gw, results)
    gw.wait_for(lambda g: len(g.queue.waiters) == 1)
    deadline = gw.sync(lambda: deadline_of(gw, queued=True))
    thread.join(10)
    reply, ended = results[0]
    assert reply.status_code == 504 and ended >= deadline
    assert gw.sync(lambda: not gw.gateway.queue.waiters)  # it left the queue at its deadline
    assert reply.json()["error"] == {
        "message": "no worker took the request within the request timeout (0.5s)",
        "type": "server_error",
        "code": "request_timeout",
    }


def test_retry_after_a_lost_worker_shares_the_request_deadline(make_gateway):
    gw = make_gateway(llm__request_timeout="2s")
    doomed = RawWorker(gw.ws_url, "doomed", ["m"])
    results: list = []
    thread = timed_chat(gw, results)
    job = doomed.next_job()
    deadline = gw.sync(lambda: deadline_of(gw, job))
    with pytest.raises(queue.Empty):  # part of the 2s pass on the first worker
        doomed.next_job(timeout=1.2)
    backup = RawWorker(gw.ws_url, "backup", ["m"])
    doomed.close()
    retry = backup.next_job()
    assert retry["job_id"] == job["job_id"] + ".2"
    assert gw.sync(lambda: deadline_of(gw, retry)) == deadline  # not a fresh 2s for the retry
    thread.join(10)
    reply, ended = results[0]
    assert reply.status_code == 504 and reply.json()["error"]["code"] == "request_timeout"
    assert ended >= deadline
    assert backup.cancels.get(timeout=20)["job_id"] == retry["job_id"]


class _Disconnecting:
    """Just enough of a Starlette request: `receive()` says disconnect once `gone` is set.
    Its scope has no `ON_DISCONNECT` hook (another server than the gateway's protocol), so
    these tests cover the watcher-task fallback; the real-server tests cover the hook."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()
        self.scope: dict = {}

    async def receive(self) -> dict:
        await self.gone.wait()
        return {"type": "http.disconnect"}


async def test_a_client_leaving_cancels_the_work_and_answers_499():
    from gatewaytui.gateway.jobs import GatewayError
    from gatewaytui.gateway.routes.common import unless_client_leaves as _unless_client_leaves

    request, started, cancelled = _Disconnecting(), asyncio.Event(), asyncio.Event()

    async def work() -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    async def handler() -> str:
        return await _unless_client_leaves(request, work())

    task = asyncio.create_task(handler())
    await started.wait()
    request.gone.set()
    with pytest.raises(GatewayError) as caught:
        await task
    assert caught.value.status == 499 and cancelled.is_set()
    assert task.cancelling() == 0  # the watcher's cancel was taken back


async def test_a_shutdown_cancel_at_the_same_time_as_a_disconnect_is_not_swallowed():
    from gatewaytui.gateway.routes.common import unless_client_leaves as _unless_client_leaves

    request, started = _Disconnecting(), asyncio.Event()

    async def work() -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    async def handler() -> str:
        return await _unless_client_leaves(request, work())

    task = asyncio.create_task(handler())
    await started.wait()
    request.gone.set()
    await asyncio.sleep(0)  # the watcher runs and cancels the handler
    task.cancel()  # ... and so does the server, shutting down
    with pytest.raises(asyncio.CancelledError):
        await task
