"""`enter` on Backends describes the backend, read-only and live; `e` still edits."""

from __future__ import annotations

import pytest

from gatewaytui.tui.screens.backend_detail import BackendDetailScreen, describe_backend
from gatewaytui.tui.screens.backend_form import BackendFormScreen
from support.panel import (
    SIZES,
    footer_keys,
    offline_app,
    screen_lines,
    settle,
    snapshot_app,
    still,
    table,
)
from support.waiting import until

LONG_ERROR = "GET /v1/models: " + "connection reset by peer while reading the body; " * 4


def _text(group) -> str:
    from rich.console import Console

    console = Console(width=200, record=True, color_system=None)
    console.print(group)
    return console.export_text()


def test_the_description_says_everything_and_never_the_key():
    backend = {
        "id": "vllm-a", "type": "vllm", "url": "http://10.0.0.9:8000/v1", "status": "unhealthy",
        "enabled": True, "routing": False, "next_retry_at": "2026-11-21T09:30:31Z",
        "last_error": LONG_ERROR, "consecutive_failures": 1, "requests": 200, "failures": 9,
        "latency_ms": 42.0, "models": ["m1", "m2"], "api_key_set": True,
        "api_key_env": "VLLM_KEY", "inflight": 2, "max_concurrency": 8,
        "last_probe_at": "2026-11-21T09:29:31Z",
    }  # fmt: skip
    now = 1_795_253_400.0  # 2026-11-21T09:30:00Z
    text = _text(describe_backend(backend, now))
    assert " ".join(LONG_ERROR.split()) in " ".join(text.split())  # whole, not cut
    assert "out of routing, next retry in 31s (09:30:31)" in text
    assert "1 failed probe in a row" in text
    assert "200  failures 9 (4.5% of requests)" in text
    assert "42ms" in text or "42 ms" in text
    assert "m1" in text and "m2" in text
    assert "key set (from env VLLM_KEY)" in text
    assert "29s ago (09:29:31)" in text


async def test_enter_describes_and_follows_the_state_read_only_has_no_edit():
    app = offline_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("6")
        assert table(app).move_cursor_to("ollama-lab")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, BackendDetailScreen), what="describe")
        body = "\n".join(screen_lines(app.screen.query_one("#backend-body")))
        assert "GET /api/tags: connect timeout" in body
        await settle(pilot)
        assert "Edit" not in footer_keys(app)  # a snapshot is read-only
        await pilot.press("e")
        assert not isinstance(app.screen, BackendFormScreen)
        # live: a change to the backend in the store shows while the screen is open
        app.store.items["backends"]["ollama-lab"] = {
            **app.store.items["backends"]["ollama-lab"],
            "last_error": "HTTP 503: overloaded",
        }
        app.screen.show_state(app.store, None)
        assert "HTTP 503: overloaded" in "\n".join(
            screen_lines(app.screen.query_one("#backend-body"))
        )
        await pilot.press("escape")
        assert not isinstance(app.screen, BackendDetailScreen)


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_backend_describe_snapshot(snap_compare, size):
    async def open_describe(pilot) -> None:
        await still(pilot)
        await pilot.press("6")
        pilot.app._deck.table().move_cursor_to("ollama-lab")
        await pilot.press("enter")
        await pilot.pause()

    assert snap_compare(snapshot_app(), terminal_size=size, run_before=open_describe)
