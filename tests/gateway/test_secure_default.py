"""Secure by default (issue 11, item 10): no operator route is open unless asked, the
generated token is in a 0600 file that local tools find, and a web page in the operator's
browser can neither drive the gateway (cross-origin, non-JSON) nor reach it by rebinding."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import httpx
import pytest
import websockets

from gatewaytui.client.session import Session
from gatewaytui.shared.operator_token import default_token_path


@pytest.fixture
def state_home(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.delenv("SERVER_TOKEN_FILE", raising=False)
    return tmp_path


def test_no_mutating_route_is_open_by_default(make_gateway, state_home):
    gw = make_gateway(server__open="false")
    path = default_token_path()
    assert path.is_relative_to(state_home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text().strip()
    assert len(token) > 30
    for method, route in (
        ("POST", "/api/server/drain"),
        ("POST", "/api/backends"),
        ("GET", "/api/state"),
        ("POST", "/api/jobs/x/cancel"),
        ("POST", "/api/mcp/x/disconnect"),
    ):
        answer = httpx.request(method, gw.url + route, json={})
        assert answer.status_code == 401, route
        assert token not in answer.text
    auth = {"Authorization": f"Bearer {token}"}
    assert httpx.get(gw.url + "/api/state", headers=auth).status_code == 200
    assert httpx.get(gw.url + "/healthz").status_code == 200
    again = make_gateway(server__open="false")  # a second start reuses the file
    assert httpx.get(again.url + "/api/state", headers=auth).status_code == 200


def test_the_explicit_open_option_runs_open(make_gateway):
    gw = make_gateway(server__open="true")
    assert httpx.get(gw.url + "/api/state").status_code == 200


def test_a_local_panel_finds_the_generated_token(make_gateway, state_home):
    gw = make_gateway(server__open="false")

    async def role() -> str:
        session = Session.live("local", gw.url)
        try:
            return await session.client.whoami()
        finally:
            await session.client.aclose()

    assert asyncio.run(role()) == "operator"


def test_cross_site_requests_and_foreign_hosts_are_refused(make_gateway):
    gw = make_gateway(server__open="true")  # even open, a browser page cannot act
    drain = httpx.post(
        gw.url + "/api/server/drain",
        content=b"{}",
        headers={"Origin": "http://evil.example", "Content-Type": "text/plain"},
    )
    assert drain.status_code == 403 and drain.json()["error"]["code"] == "cross_origin"
    plain = httpx.post(
        gw.url + "/api/backends", content=b'{"id":"x","url":"http://h:1"}',
        headers={"Content-Type": "text/plain"},
    )  # fmt: skip
    assert plain.status_code == 415
    rebound = httpx.get(gw.url + "/api/state", headers={"Host": f"evil.example:{gw.port}"})
    assert rebound.status_code == 421 and rebound.json()["error"]["code"] == "invalid_host"
    same_origin = httpx.post(
        gw.url + "/api/server/undrain", headers={"Origin": f"http://127.0.0.1:{gw.port}"}
    )
    assert same_origin.status_code == 200
    assert not gw.sync(lambda: gw.gateway.draining)

    async def ws_from_a_page() -> int:
        try:
            async with websockets.connect(
                gw.ws_url + "/api/state/stream", origin="http://evil.example"
            ):
                return 101
        except websockets.InvalidStatus as exc:
            return exc.response.status_code

    assert asyncio.run(ws_from_a_page()) == 403
