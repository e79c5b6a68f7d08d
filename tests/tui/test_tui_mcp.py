"""The MCP view: Pilot against sample_state.json and against a live gateway with a real relay
and a real MCP server, and snapshots of how it looks (80×24 and 120×40)."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from textual.widgets import Static

from gatewaytui.tui.app import GatewayApp
from gatewaytui.tui.config import ContextConfig, TuiConfig
from gatewaytui.tui.views.mcp import (
    MCPView,
    busiest,
    busiest_text,
    client_detail,
    duration_text,
)
from support.mcp_peers import InProcessRelay, relay_settings
from support.panel import FAST, SIZES, offline_app, snapshot_app, still
from support.waiting import until


def detail_text(app: GatewayApp) -> str:
    return str(app.query_one("#mcp-detail", Static).render())


async def test_mcp_view_shows_clients_sessions_and_the_selected_clients_counts():
    app = offline_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        view = app.current_view
        assert isinstance(view, MCPView)
        clients, sessions = view.clients_table, view.sessions_table
        assert clients.has_focus
        assert clients.visible_ids == ("docs-search", "jira-tools", "k8s-readonly", "notion-notes")
        assert sessions.total_count == 4
        assert "docs-search  ○ idle" in detail_text(app)
        await pilot.press("down")
        text = detail_text(app)
        assert "jira-tools  ● working" in text
        assert 'mcp-atlassian 0.11.9 "Atlassian" · stdio · 2025-06-18' in text
        assert "capabilities prompts, tools" in text
        assert "2/16 in flight · 1 refused (limit) · token" in text
        lines = text.splitlines()
        assert any(line.split() == ["tools/call", "120", "4"] for line in lines)
        assert "in flight (2)" in text and "tools/call jira_search" in text
        assert "last error (17m19s ago): tools/call jira_search: HTTP 502" in text
        await pilot.press("down", "down")
        assert "notion-notes  ✖ not ready" in detail_text(app)
        assert "MCP server 'npx' exited with code 1" in detail_text(app)
        await pilot.press("tab")  # the calls in flight, longest first
        assert sessions.has_focus
        assert sessions.cursor_id == "mcps-000869-7c41e2"
        assert "k8s-readonly  ● working" in detail_text(app)  # the detail follows the call
        await pilot.press("slash", *"jira", "enter")
        assert clients.visible_ids == ("jira-tools",)
        assert set(sessions.visible_ids) == {"mcps-000871-7c41e2", "mcps-000874-7c41e2"}
        assert "1/4 rows" in str(app.chrome.header.render())
        await pilot.press("escape")
        assert clients.visible_count == 4 and sessions.visible_count == 4


async def test_live_mcp_view_follows_a_call_through_a_real_relay(make_gateway):
    gw = make_gateway()
    relay = InProcessRelay(gw, relay_settings(gw, name="demo"))
    context = ContextConfig(name="live", url=gw.url)
    app = GatewayApp(
        TuiConfig(contexts=[context], default_context="live"),
        context=context,
        connection_options=FAST,
    )
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "hold", "arguments": {"seconds": 60}},
    }
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("5")
            view = app.current_view
            assert isinstance(view, MCPView)
            await until(pilot, lambda: view.clients_table.total_count == 1, what="the relay")
            assert "demo-tools 1.2.3" in detail_text(app)
            async with httpx.AsyncClient(timeout=30) as http:
                held = asyncio.create_task(http.post(f"{gw.url}/mcp/demo", json=call))
                await until(pilot, lambda: view.sessions_table.total_count == 1, what="the call")
                (session_id,) = view.sessions_table.visible_ids
                row = view.sessions_table.get_row(session_id)
                assert (row["method"], row["target"]) == ("tools/call", "hold")
                assert "● working" in detail_text(app) and "1/16 in flight" in detail_text(app)

                def shown_duration() -> float:
                    line = view.sessions_table.render_line(1).text  # row 1, under the header
                    (cell,) = re.findall(r" (\d+\.\d)s\b", line)  # the TIME column
                    return float(cell)

                await until(pilot, lambda: shown_duration() >= 1.0, what="a live duration")
                held.cancel()  # the MCP client goes away: the call ends everywhere
                with pytest.raises(asyncio.CancelledError):
                    await held
            await until(pilot, lambda: view.sessions_table.total_count == 0, what="call ended")
            await until(pilot, lambda: "○ idle" in detail_text(app), what="idle again")
            assert any(
                line.split() == ["tools/call", "1"] for line in detail_text(app).splitlines()
            )
    finally:
        relay.stop()


def test_detail_helpers_are_plain_and_stable():
    assert busiest({"b": 2, "a": 2, "c": 9}) == [("c", 9), ("a", 2), ("b", 2)]
    functions = {"notifications/initialized": 9, "initialize": 9, "tools/call": 4, "ping": 1}
    assert busiest_text({"functions": functions}) == "initialize 9 · tools/call 4 · ping 1"
    assert duration_text(1234) == "1.2s" and duration_text(125_000) == "2m05s"
    hint = client_detail(None, [], 0.0, {}).plain
    assert "gatewaytui mcp-relay --id NAME -- COMMAND" in hint
    evil = {"id": "[bold]x[/]", "status": "idle", "last_error": "[link=http://x]y[/link]\x1b[2J",
            "functions": {"tools/call\x1b[H": 1}}  # fmt: skip
    text = client_detail(evil, [], 0.0, {})
    assert "[bold]x[/]" in text.plain and "[link=http://x]y[/link]\ufffd[2J" in text.plain
    assert "\x1b" not in text.plain  # wire strings cannot move the cursor


# ---- snapshots -------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_mcp_view_snapshot(snap_compare, size):
    assert snap_compare(snapshot_app(), press=("5", "down"), terminal_size=size, run_before=still)


def test_mcp_view_snapshot_calls_focused(snap_compare):
    assert snap_compare(
        snapshot_app(), press=("5", "tab", "down"), terminal_size=(120, 40), run_before=still
    )
