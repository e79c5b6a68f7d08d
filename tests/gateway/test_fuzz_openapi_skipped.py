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
from schemathesis import GenerationMode

from support.fuzz import fuzz_settings

MAX_EXAMPLES = 12


def _alive(url: str) -> bool:
    try:
        return requests.get(url + "/healthz", timeout=2).status_code == 200
    except requests.RequestException:
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
            try:
                response = case.call(base_url=gw.url, session=session, timeout=20)
            except requests.RequestException as exc:
                failures.append(f"{case.method} {case.formatted_path}: {exc!r}")
                return
            statuses[response.status_code] += 1
            if response.status_code == 500 or (
                response.status_code >= 400 and not response.content.strip()
            ):
                failures.append(
                    f"{case.formatted_path} -> {response.status_code}: {response.text[:200]}"
                )
            exits = isinstance(case.body, dict) and case.body.get("exit_when_done") is True
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
