"""A streamed chat reaches the client exactly as the upstream sent it, chunk for chunk — usage
chunk and `[DONE]` included — on both paths: a backend the gateway calls itself, and a relay
worker that dials in. Real servers on real ports: the upstream under uvicorn, the gateway, the
shipped relay worker; clients are raw httpx (to compare bytes) and the official `openai` SDK.

The upstream writes its chunks with uneven spacing, escapes and non-ASCII text, some in
separate writes and some several to a write, so any re-encoding or re-framing would show.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gatewaytui.schema import BackendStatus
from gatewaytui.workers.settings import UpstreamSettings, WorkerSettings
from support.backend_upstream import Upstream
from support.gateway_harness import SimFleet

MODEL = "exact-model"
HEAD = (
    '"id":"chatcmpl-x","object":"chat.completion.chunk","created":1795253399,"model":"exact-model"'
)
CHUNKS = [
    "{" + HEAD + ',"choices":[{"index":0,"delta":{"role":"assistant","content":""},'
    '"finish_reason":null}]}',
    '{"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1795253399, '
    '"model": "exact-model", "choices": [{"index": 0, "delta": {"content": "Caf\\u00e9 "}, '
    '"finish_reason": null}]}',
    "{" + HEAD + ',"choices":[{"index":0,"delta":{"content":"crème \\"brûlée\\" "},'
    '"finish_reason":null}],"system_fingerprint":"fp_1"}',
    "{" + HEAD + ',"choices":[{"index":0,"delta":{"content":"1.0e3 \\ud83d\\ude00"},'
    '"finish_reason":null}]}',
    "{" + HEAD + ',"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}',
]
USAGE = (
    "{" + HEAD + ',"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}'
)
# How the upstream groups its writes: each group is one write, a pause between groups.
GROUPS = [[0], [1, 2, 3], [4]]


def sse(payload: str) -> bytes:
    return b"data: " + payload.encode() + b"\n\n"


class ExactUpstream(Upstream):
    """An OpenAI-compatible server that streams the fixed chunks above, byte for byte."""

    def app(self) -> Starlette:
        up = self

        async def models(_: Request) -> Response:
            data = [{"id": MODEL, "object": "model", "owned_by": "exact"}]
            return JSONResponse({"object": "list", "data": data})

        async def chat(request: Request) -> Response:
            body = await request.json()
            up.requests.append({"path": request.url.path, "auth": None, "body": body})
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return _Written(usage)

        async def embeddings(request: Request) -> Response:
            body = await request.json()
            up.requests.append({"path": request.url.path, "auth": None, "body": body})
            return Response(embeddings_body(len(body["input"])), media_type="application/json")

        return Starlette(
            routes=[
                Route("/v1/models", models),
                Route("/v1/chat/completions", chat, methods=["POST"]),
                Route("/v1/embeddings", embeddings, methods=["POST"]),
            ]
        )


def embeddings_body(count: int) -> bytes:
    """Spacing and number spellings (1.50, -0.0, 2E-3) that no re-encoding would keep."""
    items = ", ".join(
        f'{{"object": "embedding", "index": {i}, "embedding": [1.50, -0.0, 2E-3, {i}]}}'
        for i in range(count)
    )
    return (
        f'{{"object": "list", "data": [{items}], "model": "{MODEL}", '
        f'"usage": {{"prompt_tokens": {2 * count}, "total_tokens": {2 * count}}}}}'
    ).encode()


class _Written(Response):
    def __init__(self, usage: bool) -> None:
        self.usage = usage
        self.background = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        groups = [b"".join(sse(CHUNKS[i]) for i in group) for group in GROUPS]
        groups[-1] += (sse(USAGE) if self.usage else b"") + b"data: [DONE]\n\n"
        for n, data in enumerate(groups):
            if n:
                await asyncio.sleep(0.02)  # the upstream's own pacing between writes
            await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def expected(usage: bool) -> bytes:
    return b"".join(sse(c) for c in CHUNKS) + (sse(USAGE) if usage else b"") + b"data: [DONE]\n\n"


@pytest.fixture
def exact_upstream() -> Iterator[ExactUpstream]:
    up = ExactUpstream(models=[MODEL])
    yield up
    up.stop()


@pytest.fixture(params=["backend", "relay"])
def path(request, make_gateway, exact_upstream, tmp_path) -> Iterator[Any]:
    """A gateway that reaches the upstream as a backend, or through a relay worker."""
    gw = make_gateway(
        backends__store_path=str(tmp_path / "backends.yaml"), backends__probe_interval="1h"
    )
    fleet = None
    if request.param == "backend":
        spec = {"id": "exact", "url": exact_upstream.url, "max_concurrency": 4}
        httpx.post(gw.url + "/api/backends", json=spec, timeout=20).raise_for_status()
        gw.wait_for(
            lambda g: (
                (r := g.backends.records.get("exact")) is not None
                and r.status is BackendStatus.HEALTHY
            )
        )
    else:
        settings = WorkerSettings(
            gateway_url=gw.ws_url,
            id="relay-exact",
            concurrency=4,
            upstream=UpstreamSettings(url=exact_upstream.url),
        )
        fleet = SimFleet(gw, settings)
    yield gw
    if fleet is not None:
        fleet.stop()


def _stream(gw: Any, usage: bool) -> bytes:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }
    if usage:
        body["stream_options"] = {"include_usage": True}
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, timeout=20) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        return r.read()


@pytest.mark.parametrize("usage", [True, False], ids=["with-usage", "without-usage"])
def test_the_client_gets_the_upstreams_bytes(path, usage: bool) -> None:
    received = _stream(path, usage)
    assert received == expected(usage)  # every chunk as written, usage and [DONE] included
    # Accounting: the job ended with the upstream's usage (the gateway always asks for it).
    path.wait_for(lambda g: not g.jobs and g.totals.requests == 1)
    totals = path.sync(lambda: path.gateway.totals)
    assert (totals.tokens_in, totals.tokens_out) == (3, 4)


def test_the_openai_sdk_reads_the_stream_and_the_usage(path) -> None:
    client = openai.OpenAI(base_url=path.url + "/v1", api_key="none", max_retries=0, timeout=20)
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == 'Café crème "brûlée" 1.0e3 \U0001f600'
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 7
    assert chunks[-1].system_fingerprint is None and chunks[2].system_fingerprint == "fp_1"


def test_embeddings_from_one_upstream_come_back_as_its_bytes(path) -> None:
    inputs = [f"text {i}" for i in range(5)]
    body = {"model": MODEL, "input": inputs}
    r = httpx.post(path.url + "/v1/embeddings", json=body, timeout=20)
    assert r.status_code == 200
    answer = r.json()
    assert [d["embedding"] for d in answer["data"]] == [[1.5, -0.0, 0.002, i] for i in range(5)]
    assert answer["model"] == MODEL and answer["usage"]["prompt_tokens"] == 10
    assert r.content == embeddings_body(5)  # both paths pass the upstream's body on untouched
    path.wait_for(lambda g: not g.jobs and g.totals.embeddings == 5)
    assert path.sync(lambda: path.gateway.totals.tokens_in) == 10
