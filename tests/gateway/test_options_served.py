"""Options as a served gateway applies them (the resolution itself is in tests/unit)."""

from __future__ import annotations

import pytest

from gatewaytui.gateway.config import GatewayConfig
from gatewaytui.gateway.options import resolve_options


def test_yaml_list_of_keys_is_accepted_for_list_options(make_gateway):
    """`api_keys: [sk-a, sk-b]` means two keys (not the texts "['sk-a'" and "'sk-b']")."""
    import openai

    from support.gateway_harness import RunningGateway

    doc = {
        "plugin_options": {
            "server": {"api_keys": ["sk-a", "sk-b"], "viewer_tokens": []},
            "history": {"enabled": False},  # no ledger file in the working directory
        }
    }
    resolved = resolve_options(yaml_doc=doc)
    assert resolved.get("server", "api_keys") == "sk-a,sk-b"
    config = GatewayConfig.from_options(resolved)
    assert config.api_keys == ("sk-a", "sk-b") and config.viewer_tokens == ()
    running = RunningGateway(config)
    try:
        for key in ("sk-a", "sk-b"):
            client = openai.OpenAI(base_url=running.url + "/v1", api_key=key, max_retries=0)
            assert client.models.list().data == []
        wrong = openai.OpenAI(base_url=running.url + "/v1", api_key="['sk-a'", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            wrong.models.list()
    finally:
        running.stop()
