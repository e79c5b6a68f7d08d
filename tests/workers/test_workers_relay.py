"""The relay worker against a real uvicorn-served OpenAI-compatible upstream."""

from __future__ import annotations

import asyncio

import pytest

from gatewaytui.schema.protocol import ErrorFrame, ResultFrame, StatusFrame
from gatewaytui.shared.sse import SseSplitter, sse_data
from gatewaytui.workers import RelayHandler, UpstreamSettings, upstream_base_url
from support.worker_peers import (
    FakeGateway,
    UpstreamState,
    reserve_port,
    run_upstream,
    running_worker,
    worker_settings,
)

MESSAGES = [{"role": "user", "content": "hi there friend"}]


def relay(url: str, **extra: object) -> RelayHandler:
    return RelayHandler(UpstreamSettings(url=url, retry_interval_s=0.02, **extra))


async def test_models_are_discovered_and_requests_carry_the_upstream_key() -> None:
    state = UpstreamState()
    async with run_upstream(state) as url, FakeGateway() as gw:
        handler = relay(f"{url}/v1/", api_key="up-key")
        async with running_worker(worker_settings(gw.url, simulate=None), handler):
            conn = await gw.accept()
            assert conn.register.models == ["up-chat", "up-embed"]
            status = await conn.status()
            assert (status.ready, status.models) == (True, ["up-chat", "up-embed"])

            await conn.job("c1", {"messages": MESSAGES}, model="up-chat")
            _, result = await conn.outcome("c1")
    assert isinstance(result, ResultFrame) and result.data is not None
    assert result.data["choices"][0]["message"]["content"] == "Hello there"
    assert result.usage is not None and result.usage.total_tokens == 5
    assert state.bodies[-1]["model"] == "up-chat" and state.bodies[-1]["stream"] is False
    assert set(state.auth_headers) == {"Bearer up-key"}


async def test_not_ready_while_the_upstream_is_down_then_ready_when_it_answers() -> None:
    sock = reserve_port()  # bound but not listening: connections are refused
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    async with FakeGateway() as gw:
        handler = relay(url)
        async with running_worker(worker_settings(gw.url, simulate=None), handler):
            conn = await gw.accept()
            assert conn.register.models == []
            down = await conn.status()
            assert down.ready is False
            assert down.reason is not None and "upstream unreachable" in down.reason
            assert url in down.reason

            await conn.job("early", {"messages": MESSAGES}, model="up-chat")
            _, refused = await conn.outcome("early")
            assert isinstance(refused, ErrorFrame) and refused.code == "not_ready"

            async with run_upstream(UpstreamState(), sock):
                up = await conn.status()
                assert (up.ready, up.reason, up.models) == (True, None, ["up-chat", "up-embed"])

            # The upstream is gone again: a job finds out, and readiness follows.
            await conn.job("late", {"messages": MESSAGES}, model="up-chat")
            # The error and the status report race each other; take both in either order.
            frames = [await conn.next(), await conn.next()]
            (failed,) = [f for f in frames if isinstance(f, ErrorFrame)]
            (down_again,) = [f for f in frames if isinstance(f, StatusFrame)]
            assert (failed.job_id, failed.status, failed.code) == (
                "late",
                502,
                "upstream_unreachable",
            )
            assert down_again.ready is False


async def test_stream_is_passed_through_chunk_by_chunk() -> None:
    state = UpstreamState()
    async with (
        run_upstream(state) as url,
        FakeGateway() as gw,
        running_worker(worker_settings(gw.url, simulate=None), relay(url)),
    ):
        conn = await gw.accept()
        await conn.status()
        await conn.job("s1", {"messages": MESSAGES}, model="up-chat", stream=True)
        chunks, result = await conn.outcome("s1")

    deltas = [c.data["choices"][0]["delta"] for c in chunks]
    assert deltas == [*state.stream_chunks, {}]
    assert chunks[-1].data["choices"][0]["finish_reason"] == "stop"
    assert all(c.data["object"] == "chat.completion.chunk" for c in chunks)
    assert [c.tokens for c in chunks] == [0, 1, 1, 0]
    assert isinstance(result, ResultFrame) and result.data is None
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (3, 2)
    sent = state.bodies[-1]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


async def test_embeddings_are_forwarded() -> None:
    state = UpstreamState()
    async with (
        run_upstream(state) as url,
        FakeGateway() as gw,
        running_worker(worker_settings(gw.url, simulate=None), relay(url)),
    ):
        conn = await gw.accept()
        await conn.status()
        body = {"input": ["a", "bbb"]}
        await conn.job("e1", body, kind="embeddings", model="up-embed")
        _, result = await conn.outcome("e1")

    assert isinstance(result, ResultFrame) and result.data is not None
    assert [d["embedding"][0] for d in result.data["data"]] == [1.0, 3.0]
    assert result.usage is not None and result.usage.prompt_tokens == 2
    assert state.bodies[-1] == {"input": ["a", "bbb"], "model": "up-embed"}


@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_http_errors_become_error_frames(stream: bool) -> None:
    state = UpstreamState()
    async with (
        run_upstream(state) as url,
        FakeGateway() as gw,
        running_worker(worker_settings(gw.url, simulate=None), relay(url)),
    ):
        conn = await gw.accept()
        await conn.status()
        state.fail_status = 500
        await conn.job("bad", {"messages": MESSAGES}, model="up-chat", stream=stream)
        chunks, error = await conn.outcome("bad")

    assert chunks == []
    assert isinstance(error, ErrorFrame)
    assert (error.status, error.code) == (500, "upstream_error")
    assert "upstream exploded" in error.message and "HTTP 500" in error.message


async def test_an_upstream_that_does_not_answer_in_time_is_a_504() -> None:
    state = UpstreamState()
    state.hold = asyncio.Event()
    async with (
        run_upstream(state) as url,
        FakeGateway() as gw,
        running_worker(worker_settings(gw.url, simulate=None), relay(url, timeout_s=0.2)),
    ):
        conn = await gw.accept()
        await conn.status()
        await conn.job("slow", {"messages": MESSAGES}, model="up-chat")
        _, error = await conn.outcome("slow")
        state.hold.set()
    assert isinstance(error, ErrorFrame)
    assert (error.status, error.code) == (504, "upstream_timeout")


async def test_a_stream_the_upstream_breaks_off_ends_with_an_error_after_its_chunks() -> None:
    state = UpstreamState()
    state.cut_stream = True
    async with (
        run_upstream(state) as url,
        FakeGateway() as gw,
        running_worker(worker_settings(gw.url, simulate=None), relay(url)),
    ):
        conn = await gw.accept()
        await conn.status()
        await conn.job("cut", {"messages": MESSAGES}, model="up-chat", stream=True)
        chunks, error = await conn.outcome("cut")
    assert len(chunks) == 1  # what arrived before the break was passed on
    assert isinstance(error, ErrorFrame)
    assert (error.status, error.code) == (502, "upstream_unreachable")


async def test_a_stream_line_too_long_to_buffer_fails_the_job_not_the_worker() -> None:
    state = UpstreamState()
    state.stream_chunks = [{"content": "x" * (9 * 1024 * 1024)}, {"content": "after"}]
    async with (
        run_upstream(state) as url,
        FakeGateway() as gw,
        running_worker(worker_settings(gw.url, simulate=None), relay(url)),
    ):
        conn = await gw.accept()
        await conn.status()
        await conn.job("huge", {"messages": MESSAGES}, model="up-chat", stream=True)
        _, error = await conn.outcome("huge")
        assert isinstance(error, ErrorFrame)
        assert (error.status, error.code) == (502, "bad_upstream")
        state.stream_chunks = [{"content": "fine"}]
        await conn.job("next", {"messages": MESSAGES}, model="up-chat", stream=True)
        chunks, final = await conn.outcome("next")
    assert isinstance(final, ResultFrame) and chunks


@pytest.mark.parametrize(
    "given",
    ["http://h:8000", "http://h:8000/", "http://h:8000/v1", "http://h:8000/v1/"],
)
def test_upstream_url_is_normalised(given: str) -> None:
    assert upstream_base_url(given) == "http://h:8000/v1"


async def test_sse_parser_handles_comments_multiline_data_and_a_missing_blank_line() -> None:
    async def lines():
        for line in [": ping", 'data: {"a":', "data: 1}", "", "event: x", "data:[DONE]"]:
            yield line

    assert [p async for p in sse_data(lines())] == ['{"a":\n1}', "[DONE]"]


@pytest.mark.parametrize("step", [1, 2, 3, 7, 1000])
def test_byte_splitter_gives_the_same_events_however_the_bytes_arrive(step: int) -> None:
    stream = (
        b': ping\n\ndata: {"a":\ndata: 1}\n\nevent: x\r\ndata: {"b":2}\r\n\r\n'
        b'data: {"c":3}\r\rdata: [DONE]'
    )
    splitter = SseSplitter(1 << 20)
    got: list[bytes] = []
    for start in range(0, len(stream), step):
        got += splitter.feed(stream[start : start + step])
    got += splitter.close()
    assert got == [b'{"a":\n1}', b'{"b":2}', b'{"c":3}', b"[DONE]"]
    assert not splitter.overflow


def test_byte_splitter_flags_an_event_over_its_limit_after_the_ones_before_it() -> None:
    splitter = SseSplitter(16)
    assert splitter.feed(b"data: ok\n\ndata: " + b"x" * 20 + b"\n\ndata: later\n\n") == [b"ok"]
    assert splitter.overflow
