"""Hostile input (issue 11, items 1-3 and 11): bodies the gateway must refuse cleanly, and
state, stream and /metrics that no single item can break. Real server, real sockets."""

from __future__ import annotations

import json
import socket

import httpx
import pytest
from websockets.sync.client import connect

from gatewaytui.gateway.json_body import InvalidBodyError, dumps, parse_json
from support.raw_worker import RawWorker

MESSAGES = [{"role": "user", "content": "hi"}]
SURROGATE_MODEL = b'{"model": "llama3:8b-\\ud800", "messages": [{"role": "user", "content": "x"}]}'
JSON = {"content-type": "application/json"}


def test_parse_json_refuses_lone_surrogates_and_bad_utf8_but_keeps_pairs():
    assert parse_json(b'{"a": "\\ud83d\\ude00"}') == {"a": "\U0001f600"}
    with pytest.raises(InvalidBodyError, match="surrogate"):
        parse_json(b'{"a": ["x", {"k\\udc00": 1}]}')
    with pytest.raises(InvalidBodyError, match="UTF-8"):
        parse_json(b'{"a": "\xff"}')
    with pytest.raises(InvalidBodyError):
        parse_json(b'{"a": NaN}')


def test_dumps_never_fails_on_an_unencodable_string():
    text = dumps({"model": "x\ud800"})
    assert text.encode("utf-8") and json.loads(text) == {"model": "x\ud800"}


def test_lone_surrogates_are_400s_and_break_nothing(gateway):
    worker = RawWorker(gateway.ws_url, "w", ["llama3:8b"])
    url = gateway.url
    chat = httpx.post(url + "/v1/chat/completions", content=SURROGATE_MODEL, headers=JSON)
    assert chat.status_code == 400
    assert chat.json()["error"]["type"] == "invalid_request_error"
    content = b'{"model": "llama3:8b", "messages": [{"role": "user", "content": "a\\udfff"}]}'
    in_content = httpx.post(url + "/v1/chat/completions", content=content, headers=JSON)
    assert in_content.status_code == 400  # not a 502 charged to a healthy worker
    emb = httpx.post(
        url + "/v1/embeddings", content=b'{"model": "e\\ud800", "input": "x"}', headers=JSON
    )
    assert emb.status_code == 400 and "error" in emb.json()
    mcp = httpx.post(
        url + "/mcp/some-client",
        content=b'{"jsonrpc": "2.0", "id": "\\ud800", "method": "ping"}',
        headers=JSON,
    )
    assert mcp.status_code == 400 and mcp.json()["jsonrpc"] == "2.0"
    backend = httpx.post(
        url + "/api/backends", content=b'{"id": "b\\ud800", "url": "http://x"}', headers=JSON
    )
    assert backend.status_code == 400
    assert httpx.get(url + "/metrics").status_code == 200
    assert httpx.get(url + "/api/state").status_code == 200
    assert (
        worker.frames.empty()
        and gateway.sync(lambda: gateway.gateway.registry.get("w").counters.failures) == 0
    )


def test_state_and_metrics_survive_an_unencodable_item(gateway):
    RawWorker(gateway.ws_url, "w", ["m"])

    def poison() -> None:
        g = gateway.gateway
        g.metrics.job_finished("m\ud800", "chat", 0.1, True)
        job = g.dispatch.new_job("chat", "m\udfff", False, None)
        job.client = "c\ud800"

    gateway.sync(poison)
    assert httpx.get(gateway.url + "/metrics").status_code == 200
    state = httpx.get(gateway.url + "/api/state")
    assert state.status_code == 200 and state.json()["jobs"]
    with connect(gateway.ws_url + "/api/state/stream") as ws:
        snapshot = json.loads(ws.recv(timeout=5))
    assert snapshot["type"] == "snapshot"


def _raw_post(port: int, path: str, headers: dict[str, str], body_chunks) -> bytes:
    """A POST over a plain socket (chunked when no content-length): returns the raw answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sock.sendall(head.encode())
    answer = b""
    try:
        for chunk in body_chunks:
            sock.sendall(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    try:
        while b"\r\n\r\n" not in answer or len(answer) < 40:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    except (ConnectionResetError, TimeoutError):
        pass
    sock.close()
    return answer


def test_oversized_bodies_get_413_while_read_and_workers_stay(make_gateway):
    gw = make_gateway(workers__max_frame_bytes="262144")
    worker = RawWorker(gw.ws_url, "w", ["m"])
    big = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * 300_000}]})
    declared = httpx.post(gw.url + "/v1/chat/completions", content=big, headers=JSON)
    assert declared.status_code == 413
    assert declared.json()["error"]["code"] == "request_too_large"
    sent = {"n": 0}

    def chunks():  # chunked, no content-length: counted as it arrives, refused at the limit
        for _ in range(2000):
            piece = b"%x\r\n" % 65536 + b"a" * 65536 + b"\r\n"
            sent["n"] += 65536
            yield piece
        yield b"0\r\n\r\n"

    answer = _raw_post(gw.port, "/api/backends", {"Transfer-Encoding": "chunked", **JSON}, chunks())
    assert answer.startswith(b"HTTP/1.1 413")
    assert sent["n"] < 2000 * 65536  # the gateway stopped reading long before 131 MB
    mcp = httpx.post(gw.url + "/mcp/c", content=b"{" + b" " * 2_000_000 + b"}", headers=JSON)
    assert mcp.status_code == 413 and mcp.json()["error"]["code"] < 0  # JSON-RPC error
    assert worker.frames.empty() and not worker.closed.is_set()


def test_a_413_is_a_lingering_close_so_the_client_reads_it_not_a_reset(make_gateway):
    """The 413 is answered before the body is read; the client that goes on uploading
    (as HTTP clients do) can finish and then sees an orderly close, not a reset that could
    overtake the answer (it did: 1 upload in 25 got ECONNRESET instead of its 413)."""
    gw = make_gateway()
    size = 17 * 1024 * 1024  # over /v1's limit
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=20)
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{gw.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    )
    sock.sendall(head.encode())
    answer = b""
    while b"\r\n\r\n" not in answer:  # the 413 comes before a byte of body is sent
        data = sock.recv(65536)
        assert data, answer  # closed before a whole head: fail, not spin
        answer += data
    assert answer.startswith(b"HTTP/1.1 413")
    sock.sendall(b"x" * size)  # a closed socket would answer this with a reset
    rest = b""
    while data := sock.recv(65536):
        rest += data
    sock.close()
    body = json.loads((answer + rest).split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == "request_too_large"
    assert httpx.get(gw.url + "/healthz").status_code == 200


def test_a_body_whose_job_frame_cannot_fit_is_refused_before_it_is_sent(make_gateway):
    gw = make_gateway(workers__max_frame_bytes="65536")
    worker = RawWorker(gw.ws_url, "w", ["m"])
    # Under the body limit as sent, but each 1e9 re-encodes as 1000000000.0: 3x the bytes.
    numbers = ",".join(["1e9"] * 15000)
    body = f'{{"model": "m", "messages": [{{"role": "user", "content": "x"}}], "n": [{numbers}]}}'
    assert len(body) < 65536 - 4096
    answer = httpx.post(gw.url + "/v1/chat/completions", content=body, headers=JSON)
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "request_too_large"
    assert not worker.closed.is_set()
    assert gw.sync(lambda: gw.gateway.registry.get("w").gone_at) is None
    ok = []
    import threading

    t = threading.Thread(
        target=lambda: ok.append(
            httpx.post(gw.url + "/v1/chat/completions", json={"model": "m", "messages": MESSAGES})
        )
    )
    t.start()
    worker.reply_chat(worker.next_job())
    t.join(10)
    assert ok[0].status_code == 200


def test_metric_series_are_bounded_by_the_served_models(gateway):
    worker = RawWorker(gateway.ws_url, "w", ["llama3:8b"], max_concurrency=50)
    import threading

    results: list[int] = []

    def ask(i: int) -> None:
        body = {"model": f"llama3:8b-x{i}", "messages": MESSAGES}
        results.append(httpx.post(gateway.url + "/v1/chat/completions", json=body).status_code)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for _ in threads:
        worker.reply_chat(worker.next_job())
    for t in threads:
        t.join(10)
    assert results == [200] * 40
    text = httpx.get(gateway.url + "/metrics").text
    models = {
        line.split('model="', 1)[1].split('"', 1)[0]
        for line in text.splitlines()
        if 'model="' in line
    }
    assert models == {"llama3:8b"}


def test_v1_routing_errors_are_openai_envelopes_with_allow(gateway):
    missing = httpx.get(gateway.url + "/v1/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert missing.json()["error"]["code"] == "not_found"
    wrong = httpx.get(gateway.url + "/v1/chat/completions")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert wrong.json()["error"]["code"] == "method_not_allowed"
    bad = httpx.post(gateway.url + "/v1/chat/completions", content=b"[1]", headers=JSON)
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"


def test_a_worker_id_with_a_slash_registers_and_can_be_drained(gateway):
    RawWorker(gateway.ws_url, "rack1/gpu0", ["m"])
    from urllib.parse import quote

    url = f"{gateway.url}/api/workers/{quote('rack1/gpu0', safe='')}/drain"
    drained = httpx.post(url)
    assert drained.status_code == 200 and drained.json()["target"] == "rack1/gpu0"
    undrain = httpx.post(f"{gateway.url}/api/workers/rack1/gpu0/undrain")
    assert undrain.status_code == 200
    bad = httpx.post(gateway.url + "/api/workers/" + quote("a b", safe="") + "/drain")
    assert bad.status_code == 404 and bad.json()["error"]["code"] == "not_found"


async def test_a_relay_reply_header_with_crlf_is_cleaned_not_fatal(make_gateway):
    import asyncio

    import websockets

    gw = make_gateway()
    async with websockets.connect(f"{gw.ws_url}/api/mcp/connect") as ws:
        await ws.send(json.dumps({"type": "register", "id": "raw", "transport": "http"}))
        await ws.recv()
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        answer = asyncio.create_task(
            asyncio.to_thread(
                httpx.post, gw.url + "/mcp/raw", json=ping, headers={"accept": "application/json"}
            )
        )
        while (call := json.loads(await ws.recv()))["type"] != "call":
            pass
        reply = {
            "type": "reply",
            "call_id": call["call_id"],
            "message": {"jsonrpc": "2.0", "id": 1, "result": {}},
            "headers": {"mcp-session-id": "s1\r\nSet-Cookie: stolen=1", "mcp-x": "caf\u00e9\u20ac"},
        }
        await ws.send(json.dumps(reply))
        response = await answer
    assert response.status_code == 200 and response.json()["result"] == {}
    assert response.headers["mcp-session-id"] == "s1Set-Cookie: stolen=1"
    assert "set-cookie" not in response.headers and "mcp-x" not in response.headers


def test_openapi_describes_action_parameters_and_openai_routes(gateway):
    schema = httpx.get(gateway.url + "/openapi.json").json()
    drain = schema["paths"]["/api/workers/{worker_id}/drain"]["post"]
    assert [p["name"] for p in drain["parameters"]] == ["worker_id"]
    cancel = schema["paths"]["/api/jobs/{job_id}/cancel"]["post"]
    assert cancel["parameters"][0]["in"] == "path"
    chat = schema["paths"]["/v1/chat/completions"]["post"]
    assert "model" in chat["requestBody"]["content"]["application/json"]["schema"]["required"]
    assert "/v1/embeddings" in schema["paths"]


def test_every_proxied_answer_names_its_job(gateway, sim_workers):
    sim_workers(gateway, id="a", simulate={"models": ["m"]})
    chat = httpx.post(
        gateway.url + "/v1/chat/completions", json={"model": "m", "messages": MESSAGES}
    )
    assert chat.status_code == 200 and chat.headers["x-job-id"].startswith("chat-")
    emb = httpx.post(gateway.url + "/v1/embeddings", json={"model": "m", "input": ["a", "b"]})
    assert emb.status_code == 200 and emb.headers["x-job-id"].startswith("emb-")


def test_protocol_doc_states_the_request_timeout_the_code_uses():
    from pathlib import Path

    from gatewaytui.gateway.config import GatewayConfig
    from gatewaytui.schema.durations import format_duration

    doc = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()
    line = next(x for x in doc.splitlines() if "`llm.request_timeout` (default" in x)
    assert f"`{format_duration(GatewayConfig.build().request_timeout)}`" in line
