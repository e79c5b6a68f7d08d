"""The simulated inference server's OpenAI face, called with the official `openai` SDK over a
real loopback port: what the demo registers as a backend."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import httpx
import openai
import pytest
import uvicorn

from gatewaytui.gateway.server import bind_socket
from gatewaytui.workers.openai_sim import openai_app
from gatewaytui.workers.settings import SimulateSettings
from gatewaytui.workers.simulated import SimulatedHandler, completion_words
from support.waiting import uvicorn_started

MODELS = ["sim-chat", "sim-embed"]


@pytest.fixture
async def sim() -> AsyncIterator[tuple[str, SimulatedHandler]]:
    handler = SimulatedHandler(
        SimulateSettings(models=MODELS, latency_s=0.0, tokens_per_second=0, embedding_dim=8)
    )
    sock = bind_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(openai_app(handler), log_level="error", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await uvicorn_started(server, task)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1", handler
    server.should_exit = True
    await task


async def test_models_chat_stream_and_embeddings_through_the_openai_sdk(sim):
    url, _ = sim
    client = openai.AsyncOpenAI(base_url=url, api_key="unused")
    assert sorted(m.id for m in (await client.models.list()).data) == MODELS

    body = {"model": "sim-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    reply = await client.chat.completions.create(**body)
    expected = " ".join(completion_words(body, "sim-chat", 5))
    assert reply.choices[0].message.content == expected
    assert reply.usage.completion_tokens == 5

    stream = await client.chat.completions.create(
        **body, stream=True, stream_options={"include_usage": True}
    )
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    assert text == expected  # streamed or not, the same answer
    assert usage is not None and usage.completion_tokens == 5

    vectors = await client.embeddings.create(model="sim-embed", input=["a", "b"])
    assert [d.index for d in vectors.data] == [0, 1]
    assert all(math.isclose(sum(v * v for v in d.embedding), 1.0) for d in vectors.data)
    await client.close()


async def test_bad_requests_get_openai_errors(sim):
    url, handler = sim
    client = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0)
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.NotFoundError, match="not served here"):
        await client.chat.completions.create(model="nope", messages=messages)
    handler.set_ready(False, "warming up")
    with pytest.raises(openai.InternalServerError, match="warming up"):
        await client.chat.completions.create(model="sim-chat", messages=messages)
    await client.close()
    async with httpx.AsyncClient() as raw:
        answer = await raw.post(f"{url}/chat/completions", content=b"{not json")
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_json"
