"""Every operation of /openapi.json (history, MCP, worker logs, backends, actions, OpenAI)
against hostile input (issue 11's campaign, rerun): bodies with lone surrogates, bad UTF-8,
broken or non-object JSON, NaN, 100,000-deep nesting, an oversized body, as JSON and as
text/plain; query strings and path parameters with invalid percent-encoded UTF-8. No 500, no
empty error, no dropped connection; the state, the stream's source and /metrics still
serialize afterwards."""

from __future__ import annotations

import re

import httpx
import pytest

from support.raw_worker import RawWorker

FILL = {"worker_id": "w1", "job_id": "chat-x", "backend_id": "b1", "client_id": "c1"}
BODIES = {
    "surrogate": b'{"model":"m\\ud800","messages":[{"role":"user","content":"\\udc00"}]}',
    "bad utf-8": b'{"model":"\xff\xfe","x":"\xc3"}',
    "broken": b'{"model": ',
    "array": b"[1,2,3]",
    "null": b"null",
    "nan": b'{"timeout_s": NaN}',
    "deep": b"[" * 100_000 + b"]" * 100_000,
}
QUERIES = ("?model=%ff", "?model=%ed%a0%80", "?limit=-1&tail=99999999999999999999", "?x=%00")


def _bad(label: str, answer: httpx.Response) -> str | None:
    server_error = answer.status_code >= 500 and answer.status_code not in (501, 502, 503, 504)
    if server_error or (answer.status_code >= 400 and not answer.content.strip()):
        return f"{label} -> {answer.status_code} {answer.text[:150]}"
    return None


def _url(base: str, path: str, value: str | None = None) -> str:
    return base + re.sub(r"{(\w+)(:\w+)?}", lambda m: value or FILL.get(m.group(1), "x"), path)


def _send_big(client: httpx.Client, method: str, url: str, big: bytes) -> None:
    # The 413 is a lingering close: the client's upload ends and it reads the answer.
    answer = client.request(method, url, content=big, headers={"Content-Type": "application/json"})
    assert answer.status_code == 413, (url, answer.status_code, answer.text[:200])


@pytest.mark.timeout(300)
def test_hostile_input_on_every_operation(make_gateway, tmp_path):
    gw = make_gateway(
        backends__store_path=str(tmp_path / "b.yaml"), history__path=str(tmp_path / "h.sqlite3")
    )
    worker = RawWorker(gw.ws_url, "w1", ["m"], max_concurrency=4)
    operations = [
        (method.upper(), path)
        for path, ops in httpx.get(gw.url + "/openapi.json").json()["paths"].items()
        for method in ops
    ]
    assert len(operations) >= 25
    found: list[str | None] = []
    big = b'{"x":"' + b"a" * (17 * 1024 * 1024) + b'"}'  # over every route's limit
    big_sent: set[str] = set()
    with httpx.Client(timeout=30) as client:
        for method, path in operations:
            url = _url(gw.url, path)
            if method in ("POST", "PUT", "PATCH"):
                for name, body in BODIES.items():
                    for ctype in ("application/json", "text/plain"):
                        answer = client.request(
                            method, url, content=body, headers={"Content-Type": ctype}
                        )
                        found.append(_bad(f"{method} {path} {name} {ctype}", answer))
                family = path.split("/")[1]  # v1, mcp, api: one limit each
                if family not in big_sent:
                    big_sent.add(family)
                    _send_big(client, method, url, big)
            read = method if method in ("GET", "DELETE") else "GET"
            for query in QUERIES:
                found.append(_bad(f"{read} {path}{query}", client.request(read, url + query)))
            if "{" in path:
                odd = _url(gw.url, path, "%ff%ed%a0%80")
                found.append(
                    _bad(f"{method} {path} odd path", client.request(method, odd, json={}))
                )
        for path in ("/api/state", "/metrics", "/healthz", "/api/history/jobs"):
            assert client.get(gw.url + path).status_code == 200, path
    worker.close()
    assert [f for f in found if f] == []
