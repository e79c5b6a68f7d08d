"""What the gateway reads from an embeddings answer it passes on without parsing."""

from __future__ import annotations

import json

import pytest

from gatewaytui.shared.passthrough import embeddings_summary


def body(count: int, usage: str = '{"prompt_tokens":8,"total_tokens":8}', **extra: str) -> bytes:
    items = ",".join(
        f'{{"object":"embedding","index":{i},"embedding":[0.5,-1e-3,{i}]}}' for i in range(count)
    )
    head = "".join(f'"{k}":{v},' for k, v in extra.items())
    return f'{{{head}"object":"list","data":[{items}],"model":"m","usage":{usage}}}'.encode()


def test_count_model_and_usage_of_an_openai_body() -> None:
    assert embeddings_summary(body(16)) == (16, "m", {"prompt_tokens": 8, "total_tokens": 8})


@pytest.mark.parametrize(
    "usage",
    [
        '{"prompt_tokens":8,"details":{"cached":1}}',  # nested
        '{"prompt_tokens":8,"note":"a}b{c"}',  # braces inside a string
        '{ "prompt_tokens" : 8 }',  # spaced
    ],
)
def test_usage_shapes(usage: str) -> None:
    count, model, got = embeddings_summary(body(2, usage))  # type: ignore[misc]
    assert (count, model, got) == (2, "m", json.loads(usage))


def test_model_named_first_as_vllm_does_and_odd_bodies() -> None:
    vllm = b'{"id":"e-1","model":"m2","data":[{"index":0,"embedding":[1]}],'
    vllm += b'"usage":{"prompt_tokens":2}}'
    assert embeddings_summary(vllm) == (1, "m2", {"prompt_tokens": 2})
    assert embeddings_summary(b"[1, 2]") is None
    assert embeddings_summary(b'{"error": "x"}') is None
    # base64 vectors hold no arrays: the count disagrees and the gateway parses instead
    b64 = b'{"data":[{"index":0,"embedding":"AAAA"}],"model":"m","usage":{"prompt_tokens":1}}'
    assert embeddings_summary(b64) == (0, "m", {"prompt_tokens": 1})
