"""The OpenAI-compatible API, driven by the official `openai` SDK against a real server."""

from __future__ import annotations

import threading

import httpx
import openai
import pytest

from gatewaytui.workers import embed_text
from support.raw_worker import RawWorker

MESSAGES = [{"role": "user", "content": "Say something about gateways"}]


def sdk(gw, key: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=20)


def test_chat_completion_with_the_sdk(gateway, sim_workers):
    sim_workers(gateway, id="sim", simulate={"models": ["llama3:8b"], "max_tokens": 12})
    reply = sdk(gateway).chat.completions.create(model="llama3:8b", messages=MESSAGES)
    assert reply.choices[0].message.content
    assert reply.usage.completion_tokens == 12
    assert reply.usage.prompt_tokens > 0
    state = httpx.get(gateway.url + "/api/state").json()
    (worker,) = state["workers"]
    assert worker["processed"] == 1 and worker["tokens_out"] == 12
    assert worker["per_model"]["llama3:8b"]["requests"] == 1
    assert state["server"]["tokens_out_total"] == 12


def test_streaming_chat_with_the_sdk(gateway, sim_workers):
    sim_workers(gateway, id="sim", simulate={"models": ["llama3:8b"], "max_tokens": 9})
    stream = sdk(gateway).chat.completions.create(model="llama3:8b", messages=MESSAGES, stream=True)
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len([p for p in pieces if p]) == 9
    state = httpx.get(gateway.url + "/api/state").json()
    assert state["workers"][0]["tokens_out"] == 9
    assert state["jobs"] == []


def test_family_model_is_served_by_a_quantised_worker(gateway, sim_workers):
    sim_workers(gateway, id="q4", simulate={"models": ["llama3:8b-q4_K_M"]})
    reply = sdk(gateway).chat.completions.create(model="llama3:8b", messages=MESSAGES)
    assert reply.choices[0].message.content


def test_embeddings_partitioned_and_reassembled_in_order(gateway, sim_workers):
    model = "nomic-embed-text"
    sim_workers(gateway, id="small", batch_size=7, concurrency=2, simulate={"models": [model]})
    sim_workers(gateway, id="big", batch_size=25, concurrency=2, simulate={"models": [model]})
    texts = [f"passage number {i}" for i in range(130)]
    result = sdk(gateway).embeddings.create(model=model, input=texts)
    assert [d.index for d in result.data] == list(range(130))
    for text, item in zip(texts, result.data, strict=True):
        assert item.embedding == pytest.approx(embed_text(text, 8))
    workers = {w["id"]: w for w in httpx.get(gateway.url + "/api/state").json()["workers"]}
    assert workers["small"]["embeddings"] > 0 and workers["big"]["embeddings"] > 0
    assert workers["small"]["embeddings"] + workers["big"]["embeddings"] == 130


def test_single_string_embedding(gateway, sim_workers):
    sim_workers(gateway, id="e", simulate={"models": ["e5"]})
    result = sdk(gateway).embeddings.create(model="e5", input="one text")
    assert len(result.data) == 1 and result.data[0].embedding == pytest.approx(
        embed_text("one text", 8)
    )


def test_models_are_aggregated_with_owners(gateway, sim_workers):
    sim_workers(gateway, id="a", simulate={"models": ["m1", "m2"]})
    sim_workers(gateway, id="b", simulate={"models": ["m2"]})
    models = {m.id: m.owned_by for m in sdk(gateway).models.list()}
    assert models["m1"] == "a"
    assert sorted(models["m2"].split(",")) == ["a", "b"]


def test_unknown_model_is_a_404_in_openai_format(gateway, sim_workers):
    sim_workers(gateway, id="a", simulate={"models": ["m1"]})
    with pytest.raises(openai.NotFoundError) as info:
        sdk(gateway).chat.completions.create(model="nope", messages=MESSAGES)
    assert info.value.code == "model_not_found"


def test_api_key_is_required_when_configured(make_gateway, sim_workers):
    gw = make_gateway(server__api_keys="k1,k2")
    sim_workers(gw, id="a", simulate={"models": ["m1"]})
    with pytest.raises(openai.AuthenticationError):
        sdk(gw, "wrong").chat.completions.create(model="m1", messages=MESSAGES)
    assert sdk(gw, "k2").chat.completions.create(model="m1", messages=MESSAGES).choices


def test_bad_bodies_get_clear_400s(gateway, sim_workers):
    sim_workers(gateway, id="a", simulate={"models": ["m1"]})
    url = gateway.url + "/v1/chat/completions"
    bad_json = httpx.post(url, content=b"{nope", headers={"content-type": "application/json"})
    assert bad_json.status_code == 400 and "not valid JSON" in bad_json.json()["error"]["message"]
    no_messages = httpx.post(url, json={"model": "m1"})
    assert no_messages.status_code == 400 and "messages" in no_messages.json()["error"]["message"]
    bad_input = httpx.post(gateway.url + "/v1/embeddings", json={"model": "m1", "input": []})
    assert bad_input.status_code == 400


def _post_in_thread(gw, body: dict, results: list) -> threading.Thread:
    def run() -> None:
        results.append(httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=20))

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_queue_waits_fifo_then_rejects_when_full(make_gateway):
    gw = make_gateway(llm__queue_size="2", llm__queue_timeout="10s")
    worker = RawWorker(gw.ws_url, "solo", ["m"], max_concurrency=1)
    body = {"model": "m", "messages": MESSAGES}
    results: list = []
    threads = [_post_in_thread(gw, {**body, "n": 1}, results)]
    first = worker.next_job()
    threads.append(_post_in_thread(gw, {**body, "n": 2}, results))
    gw.wait_for(lambda g: len(g.queue.waiters) == 1)
    threads.append(_post_in_thread(gw, {**body, "n": 3}, results))
    gw.wait_for(lambda g: len(g.queue.waiters) == 2)
    full = httpx.post(gw.url + "/v1/chat/completions", json=body)
    assert full.status_code == 503 and full.json()["error"]["code"] == "queue_full"
    state = httpx.get(gw.url + "/api/state").json()
    assert state["server"]["queue"] == {"length": 2, "capacity": 2}
    assert state["models"][0]["queued"] == 2
    worker.reply_chat(first)
    second = worker.next_job()
    assert second["body"]["n"] == 2  # FIFO
    worker.reply_chat(second)
    third = worker.next_job()
    assert third["body"]["n"] == 3
    worker.reply_chat(third)
    for thread in threads:
        thread.join(10)
    assert [r.status_code for r in results] == [200, 200, 200]


def test_queue_timeout_is_a_503(make_gateway):
    gw = make_gateway(llm__queue_timeout="300ms")
    worker = RawWorker(gw.ws_url, "solo", ["m"], max_concurrency=1)
    results: list = []
    thread = _post_in_thread(gw, {"model": "m", "messages": MESSAGES}, results)
    job = worker.next_job()
    timed_out = httpx.post(
        gw.url + "/v1/chat/completions", json={"model": "m", "messages": MESSAGES}
    )
    assert timed_out.status_code == 503
    assert timed_out.json()["error"]["code"] == "queue_timeout"
    worker.reply_chat(job)
    thread.join(10)
    assert results[0].status_code == 200
    assert gw.sync(lambda: len(gw.gateway.queue.waiters)) == 0


def test_streamed_usage_when_the_client_asks_for_it(gateway):
    worker = RawWorker(gateway.ws_url, "w", ["m"])
    client = sdk(gateway)
    stream = client.chat.completions.create(
        model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    job = worker.next_job()
    assert job["body"]["stream_options"] == {"include_usage": True}
    for word in ("one", "two", "three"):
        worker.chunk(job, word)
    worker.finish_stream(job, completion_tokens=3)  # usage on the result frame: 5 in, 3 out
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "onetwothree"
    last = chunks[-1]
    assert last.choices == [] and last.object == "chat.completion.chunk"
    assert last.id == chunks[0].id and last.model == "m"
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (5, 3)
    assert last.usage.total_tokens == 8
    assert all(c.usage is None for c in chunks[:-1])


def test_no_usage_chunk_unless_asked(gateway):
    worker = RawWorker(gateway.ws_url, "w", ["m"])
    stream = sdk(gateway).chat.completions.create(model="m", messages=MESSAGES, stream=True)
    job = worker.next_job()
    worker.chunk(job, "hi")
    worker.finish_stream(job, completion_tokens=1)
    chunks = list(stream)
    assert len(chunks) == 1 and chunks[0].choices and chunks[0].usage is None


def test_streamed_usage_from_a_simulated_worker(gateway, sim_workers):
    sim_workers(gateway, id="sim", simulate={"models": ["llama3:8b"], "max_tokens": 7})
    stream = sdk(gateway).chat.completions.create(
        model="llama3:8b",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage.completion_tokens == 7
    assert usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + 7
    state = httpx.get(gateway.url + "/api/state").json()
    assert state["server"]["tokens_in_total"] == usage.prompt_tokens
