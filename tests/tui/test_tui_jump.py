"""`:` jumps k9s-style: `:w <worker>`, `:j <job>`, `:b <backend>`, or a view by name."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Static

from gatewaytui.tui.screens.jump import JumpError, JumpScreen, candidates, resolve_jump
from gatewaytui.tui.views.base import VIEWS
from support.panel import SIZES, offline_app, screen_lines, snapshot_app, still, table
from support.waiting import until


def _views():
    return [(entry.view_id, entry.title) for entry in VIEWS]


async def _store():
    app = offline_app()
    async with app.run_test(size=(120, 40)):
        return app.store


@pytest.fixture
async def store():
    return await _store()


async def test_resolve_ids_views_prefixes_and_errors(store):
    views = _views()
    assert resolve_jump("w gpu-a100-01", store, views).row_id == "gpu-a100-01"
    assert resolve_jump(":workers gpu-h100-02", store, views).row_id == "gpu-h100-02"
    jump = resolve_jump("b ollama", store, views)  # a unique prefix is enough
    assert (jump.view_id, jump.row_id) == ("backends", "ollama-lab")
    assert resolve_jump("jobs", store, views).view_id == "jobs"
    assert resolve_jump("hist", store, views).view_id == "history"
    assert resolve_jump(":Usage", store, views).view_id == "usage"
    job_id = next(iter(store.jobs))
    assert resolve_jump(f"j {job_id}", store, views).row_id == job_id
    with pytest.raises(JumpError, match=r"unknown command 'wokers' \(did you mean 'workers'\?\)"):
        resolve_jump("wokers", store, views)
    with pytest.raises(JumpError, match=r"no worker 'gpu-a100-1' \(did you mean 'gpu-a100-01'\?\)"):
        resolve_jump("w gpu-a100-1", store, views)
    with pytest.raises(JumpError, match=r"no job 'nope' \(ended jobs are in :history\)"):
        resolve_jump("j nope", store, views)
    assert "w gpu-a100-01" in candidates("w gpu-a1", store, views)
    assert "workers" in candidates("wor", store, views)


async def test_colon_jumps_to_a_worker_through_a_filter_and_completes_ids():
    app = offline_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2", "slash", *"gpu-l4", "enter")
        await until(pilot, lambda: table(app).visible_count < table(app).total_count, what="filt")
        await pilot.press("colon")
        await until(pilot, lambda: isinstance(app.screen, JumpScreen), what="prompt")
        await pilot.press(*"w gpu-a100-0")
        note = app.screen.query_one("#jump-note", Static)
        await until(pilot, lambda: "gpu-a100-01" in "".join(screen_lines(note)), what="ids")
        await pilot.press("tab")  # completes the first live id
        assert app.screen.query_one(Input).value == "w gpu-a100-01"
        await pilot.press("enter")
        await until(pilot, lambda: not isinstance(app.screen, JumpScreen), what="closed")
        await until(pilot, lambda: table(app).cursor_id == "gpu-a100-01", what="the cursor")
        assert app.current_view.view_id == "workers" and not app.current_view.filter_text

        await pilot.press("colon", *"b vllm-prod", "enter")
        await until(pilot, lambda: app.current_view.view_id == "backends", what="backends")
        await until(pilot, lambda: table(app).cursor_id == "vllm-prod", what="backend cursor")

        await pilot.press("colon", *"w nope-1", "enter")  # an unknown id: one line, stays open
        await pilot.pause()
        assert isinstance(app.screen, JumpScreen)
        assert "no worker 'nope-1'" in "".join(screen_lines(app.screen.query_one("#jump-note")))
        await pilot.press("escape")
        assert not isinstance(app.screen, JumpScreen)


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_jump_prompt_snapshot(snap_compare, size):
    async def type_jump(pilot) -> None:
        await still(pilot)
        await pilot.press("2", "colon", *"w gpu-a1")
        pilot.app.screen.query_one(Input).cursor_blink = False
        await pilot.pause()

    assert snap_compare(snapshot_app(), terminal_size=size, run_before=type_jump)
