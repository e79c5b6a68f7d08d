"""The simulated worker against a real WebSocket gateway peer: register, chat, embeddings."""

from __future__ import annotations

import logging
import math
import platform

import gatewaytui
from gatewaytui.schema.protocol import ErrorFrame, ResultFrame
from gatewaytui.workers import SimulatedHandler, SimulateSettings, embed_text
from support.worker_peers import FakeGateway, running_worker, within, worker_settings

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": [{"type": "text", "text": "say three words"}]},
]  # 6 words


async def test_register_carries_identity_host_labels_and_key() -> None:
    async with FakeGateway(key="s3cret", heartbeat_interval_s=0.05) as gw:
        settings = worker_settings(
            gw.url.replace("ws://", "http://"),  # http:// is accepted and turned into ws://
            key="s3cret",
            id="sim-a",
            name="Sim A",
            labels={"zone": "lab"},
            concurrency=3,
            batch_size=8,
            simulate=SimulateSettings(models=["m1", "m2"]),
        )
        async with running_worker(settings) as client:
            conn = await gw.accept()
            reg = conn.register
            assert (reg.id, reg.name, reg.models) == ("sim-a", "Sim A", ["m1", "m2"])
            assert (reg.max_concurrency, reg.preferred_batch_size) == (3, 8)
            assert reg.version == gatewaytui.__version__
            assert reg.labels == {"zone": "lab"}
            assert reg.host.hostname == platform.node()
            assert reg.host.os == platform.system()
            assert reg.host.arch and reg.host.cpu_count and reg.host.python
            assert conn.headers["authorization"] == "Bearer s3cret"

            status = await conn.status()
            assert status.ready is True and status.reason is None
            assert status.models == ["m1", "m2"] and status.draining is False

            await within(conn.heartbeat_seen.wait())
            await within(client.connected.wait())
            assert client.registered is not None
            assert client.registered.heartbeat_interval_s == 0.05


async def test_no_authorization_header_without_a_key() -> None:
    async with FakeGateway() as gw, running_worker(worker_settings(gw.url)):
        conn = await gw.accept()
        assert "authorization" not in {k.lower() for k in conn.headers}


async def test_chat_non_stream_is_an_openai_completion() -> None:
    async with FakeGateway() as gw, running_worker(worker_settings(gw.url)):
        conn = await gw.accept()
        await conn.status()
        body = {"model": "sim-chat", "messages": MESSAGES, "max_tokens": 99}
        await conn.job("j1", body | {"max_completion_tokens": 5})
        chunks, result = await conn.outcome("j1")

        assert chunks == []
        assert isinstance(result, ResultFrame) and result.data is not None
        data = result.data
        assert data["object"] == "chat.completion"
        assert data["model"] == "sim-chat"
        assert isinstance(data["id"], str) and isinstance(data["created"], int)
        (choice,) = data["choices"]
        assert choice["index"] == 0 and choice["finish_reason"] == "stop"
        assert choice["message"]["role"] == "assistant"
        assert len(choice["message"]["content"].split()) == 5  # max_completion_tokens wins
        assert data["usage"] == {"prompt_tokens": 6, "completion_tokens": 5, "total_tokens": 11}
        assert result.usage is not None and result.usage.model_dump() == data["usage"]


async def test_chat_stream_chunks_match_the_non_stream_answer() -> None:
    sim = SimulateSettings(latency_s=0, tokens_per_second=0, max_tokens=7, seed=3)
    async with FakeGateway() as gw, running_worker(worker_settings(gw.url, simulate=sim)):
        conn = await gw.accept()
        await conn.status()
        body = {"model": "sim-chat", "messages": MESSAGES}
        await conn.job("s1", body, stream=True)
        chunks, result = await conn.outcome("s1")
        await conn.job("n1", body)
        _, whole = await conn.outcome("n1")

    assert all(c.data["object"] == "chat.completion.chunk" for c in chunks)
    first, *middle, last = [c.data["choices"][0] for c in chunks]
    assert first["delta"]["role"] == "assistant" and first["finish_reason"] is None
    assert last["finish_reason"] == "stop"
    assert all(m["finish_reason"] is None for m in middle)
    streamed = "".join(m["delta"]["content"] for m in middle)

    assert isinstance(result, ResultFrame) and result.data is None
    assert result.usage is not None
    assert result.usage.completion_tokens == 7 == sum(c.tokens for c in chunks)
    assert result.usage.prompt_tokens == 6
    assert isinstance(whole, ResultFrame) and whole.data is not None
    assert streamed == whole.data["choices"][0]["message"]["content"]


async def test_embeddings_keep_order_and_are_deterministic_unit_vectors() -> None:
    sim = SimulateSettings(latency_s=0, embedding_dim=16)
    texts = ["alpha", "beta gamma", "alpha"]
    async with FakeGateway() as gw, running_worker(worker_settings(gw.url, simulate=sim)):
        conn = await gw.accept()
        await conn.status()
        body = {"model": "sim-embed", "input": texts}
        await conn.job("e1", body, kind="embeddings", model="sim-embed")
        _, result = await conn.outcome("e1")

    assert isinstance(result, ResultFrame) and result.data is not None
    data = result.data
    assert data["object"] == "list" and data["model"] == "sim-embed"
    assert [d["index"] for d in data["data"]] == [0, 1, 2]
    assert all(d["object"] == "embedding" for d in data["data"])
    vectors = [d["embedding"] for d in data["data"]]
    assert vectors[0] == vectors[2] != vectors[1]
    assert vectors == [embed_text(t, 16) for t in texts]
    assert all(math.isclose(math.hypot(*v), 1.0) for v in vectors)
    assert data["usage"] == {"prompt_tokens": 4, "total_tokens": 4}


async def test_failure_rate_one_fails_every_job_with_500() -> None:
    sim = SimulateSettings(latency_s=0, failure_rate=1.0)
    async with FakeGateway() as gw, running_worker(worker_settings(gw.url, simulate=sim)) as w:
        conn = await gw.accept()
        await conn.status()
        await conn.job("f1", {"messages": MESSAGES})
        await conn.job("f2", {"messages": MESSAGES}, stream=True)
        await conn.job("f3", {"input": ["x"]}, kind="embeddings", model="sim-embed")
        frames = [await conn.next() for _ in range(3)]

    assert {f.job_id for f in frames} == {"f1", "f2", "f3"}
    for frame in frames:
        assert isinstance(frame, ErrorFrame)
        assert (frame.status, frame.message, frame.code) == (
            500,
            "simulated failure",
            "simulated_failure",
        )
    assert w.jobs_failed == 3


async def test_jobs_it_cannot_take_are_refused_with_error_frames() -> None:
    sim = SimulateSettings(latency_s=30)  # jobs stay in flight
    async with FakeGateway() as gw:
        settings = worker_settings(gw.url, simulate=sim, concurrency=1)
        async with running_worker(settings) as client:
            conn = await gw.accept()
            await conn.status()
            await conn.job("busy", {"messages": MESSAGES})
            await conn.job("extra", {"messages": MESSAGES})
            await conn.job("nope", {"messages": MESSAGES}, model="not-here")
            over, unknown = await conn.next(), await conn.next()
            assert client.inflight == 1

    assert isinstance(over, ErrorFrame) and over.job_id == "extra"
    assert (over.status, over.code) == (503, "over_capacity")
    assert isinstance(unknown, ErrorFrame) and unknown.job_id == "nope"
    assert (unknown.status, unknown.code) == (404, "model_not_found")


async def test_not_ready_toggle_is_reported_and_enforced() -> None:
    sim = SimulateSettings(latency_s=0, not_ready=True, not_ready_reason="warming up")
    handler = SimulatedHandler(sim)
    async with FakeGateway() as gw, running_worker(worker_settings(gw.url), handler):
        conn = await gw.accept()
        status = await conn.status()
        assert (status.ready, status.reason) == (False, "warming up")

        await conn.job("j1", {"messages": MESSAGES})
        _, refused = await conn.outcome("j1")
        assert isinstance(refused, ErrorFrame)
        assert (refused.status, refused.code) == (503, "not_ready")
        assert "warming up" in refused.message

        handler.set_ready(True)
        status = await conn.status()
        assert (status.ready, status.reason) == (True, None)
        await conn.job("j2", {"messages": MESSAGES, "max_tokens": 1})
        _, result = await conn.outcome("j2")
        assert isinstance(result, ResultFrame)


async def test_frames_that_do_not_parse_are_logged_and_ignored(caplog) -> None:
    caplog.set_level(logging.INFO, logger="gatewaytui.workers")
    async with FakeGateway() as gw, running_worker(worker_settings(gw.url)) as client:
        conn = await gw.accept()
        await conn.status()
        await conn.send("this is not json")
        await conn.send('{"type": "bogus"}')
        await conn.send('{"type": "job", "job_id": "x"}')  # missing fields
        await conn.send('{"type": "drain", "draining": true}')
        await conn.job("ok", {"messages": MESSAGES, "max_tokens": 2})
        _, result = await conn.outcome("ok")
        assert isinstance(result, ResultFrame)
        assert client.connected.is_set() and len(client.sessions) == 0

    ignored = [r for r in caplog.records if "does not parse" in r.getMessage()]
    assert len(ignored) == 3
    assert any("drained this worker" in r.getMessage() for r in caplog.records)


async def test_a_result_larger_than_the_gateway_frame_limit_becomes_an_error() -> None:
    sim = SimulateSettings(latency_s=0, embedding_dim=512)
    async with (
        FakeGateway(max_frame_bytes=4096) as gw,
        running_worker(worker_settings(gw.url, simulate=sim)),
    ):
        conn = await gw.accept()
        await conn.status()
        await conn.job("big", {"input": ["a", "b"]}, kind="embeddings", model="sim-embed")
        _, result = await conn.outcome("big")

    assert isinstance(result, ErrorFrame)
    assert (result.status, result.code) == (502, "frame_too_large")
