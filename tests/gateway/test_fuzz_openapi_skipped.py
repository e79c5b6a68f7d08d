"""The operations the main OpenAPI fuzz leaves out (issue 11), fuzzed on their own throwaway
gateways: `POST /api/server/drain` (a generated `exit_when_done: true` may stop the server:
a stopped gateway is replaced and the fuzz goes on) and `POST /api/backends/{id}/probe`
(a dry run calls the generated URL; loopback ports nobody listens on, bounded timeouts).
No 500, no empty error, no broken connection."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import given
from pydantic import ValidationError
from schemathesis import GenerationMode

from gatewaytui.schema.api import ServerDrainRequest
from support.fuzz import call_checked, fuzz_settings

MAX_EXAMPLES = 12


def _alive(url: str) -> bool:
    try:
        return requests.get(url + "/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _asks_to_exit(body: Any) -> bool:
    """The drain body asks the gateway to exit, as the gateway reads it (pydantic takes 1,
    "true", "yes" for True as well)."""
    try:
        return ServerDrainRequest.model_validate(body).exit_when_done
    except (ValidationError, TypeError):
        return False


def _fuzz(make_gateway: Any, tmp_path: Path, method: str, path: str) -> Counter[int]:
    gateways = [make_gateway(backends__store_path=str(tmp_path / "backends.yaml"))]
    schema = schemathesis.openapi.from_url(gateways[0].url + "/openapi.json")
    operation = schema[path][method]
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    session = requests.Session()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @fuzz_settings(MAX_EXAMPLES)
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: schemathesis.Case) -> None:
            gw = gateways[-1]
            response = call_checked(case, gw.url, session, 20, statuses, failures)
            if response is None:
                return
            exits = _asks_to_exit(case.body)
            if response.status_code == 200 and exits:  # it stops by design: a new gateway
                gateways.append(make_gateway(backends__store_path=str(tmp_path / "backends.yaml")))
                return
            session.post(gw.url + "/api/server/undrain", timeout=5)  # the next case starts fresh
            assert _alive(gw.url), f"{case.formatted_path} {case.body!r} stopped the gateway"

        run()
    assert failures == [], failures[:5]
    return statuses


@pytest.mark.timeout(300)
def test_server_drain_fuzz(make_gateway, tmp_path: Path):
    statuses = _fuzz(make_gateway, tmp_path, "POST", "/api/server/drain")
    assert sum(statuses.values()) >= 2 * MAX_EXAMPLES - 4


@pytest.mark.timeout(300)
def test_backend_probe_fuzz(make_gateway, tmp_path: Path):
    statuses = _fuzz(make_gateway, tmp_path, "POST", "/api/backends/{backend_id}/probe")
    assert sum(statuses.values()) >= 2 * MAX_EXAMPLES - 4
