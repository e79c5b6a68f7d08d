"""Drain / re-add by label, and a drain dialog whose rows follow the state while it is open."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Static

from gatewaytui.shared.selector import parse_selector
from gatewaytui.tui.screens.confirm import ConfirmScreen
from gatewaytui.tui.screens.label_select import LabelSelectScreen, preview, select_workers
from gatewaytui.tui.screens.type_confirm import TypeToConfirmScreen
from support.panel import SIZES, choose_from_palette, live_app, snapshot_app, still, table
from support.raw_worker import RawWorker
from support.waiting import until

WORKERS = {
    "h1": {"id": "h1", "status": "idle", "models": ["big"], "labels": {"gpu": "H100"}},
    "h2": {"id": "h2", "status": "gone", "models": ["big"], "labels": {"gpu": "H100"}},
    "a1": {"id": "a1", "status": "idle", "models": ["big"], "labels": {"gpu": "A100"}},
    "d1": {"id": "d1", "status": "idle", "models": ["big"], "labels": {"gpu": "H100"},
           "draining": True},
}  # fmt: skip


def test_a_drain_skips_gone_and_draining_workers_and_a_re_add_takes_only_draining_ones():
    h100 = parse_selector("gpu=H100")
    assert select_workers("drain", h100, WORKERS) == (["h1"], ["d1", "h2"])
    assert select_workers("undrain", h100, WORKERS) == (["d1"], ["h1", "h2"])
    text = preview("drain", h100, WORKERS, {"big": {"workers": 3, "ready_workers": 2}}).plain
    assert "1 worker matches gpu=H100:" in text and "• h1" in text
    assert "2 more workers match but are gone or draining already: left out" in text
    assert "big: 1 of 3 workers ready after this, 0 queued" in text
    none = preview("drain", parse_selector("gpu=h100"), WORKERS, {}).plain
    assert "no worker to drain matches gpu=h100" in none
    assert "labels here (case-sensitive): gpu=A100 (1), gpu=H100 (2)" in none  # gone not counted


def _preview(app) -> str:
    return str(app.screen.query_one("#label-preview", Static).render())


async def test_drain_by_label_shows_the_matches_then_confirms_and_drains(gateway):
    workers = [
        RawWorker(gateway.ws_url, "h100-a", ["m"], labels={"gpu": "H100", "zone": "a"}),
        RawWorker(gateway.ws_url, "h100-b", ["m"], labels={"gpu": "H100", "zone": "b"}),
        RawWorker(gateway.ws_url, "a100-a", ["m"], labels={"gpu": "A100", "zone": "a"}),
    ]
    app = live_app(gateway.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: table(app).total_count == 3, what="three workers")
        await pilot.press("D")
        await until(pilot, lambda: isinstance(app.screen, LabelSelectScreen), what="prompt")
        await pilot.press(*"zone in (a,b")
        await until(pilot, lambda: "bad selector: expected ',' or ')'" in _preview(app), what="err")
        await pilot.press("enter")  # a bad selector goes nowhere
        assert isinstance(app.screen, LabelSelectScreen)
        app.screen.query_one(Input).value = "gpu=H100"
        await until(pilot, lambda: "2 workers match gpu=H100:" in _preview(app), what="matches")
        shown = _preview(app)
        assert "h100-a" in shown and "h100-b" in shown and "a100-a" not in shown
        assert "m: 1 of 3 workers ready after this, 0 queued" in shown
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        assert app.screen.title_text == "Drain 2 workers?"
        await pilot.press("y")
        await until(
            pilot,
            lambda: all(app.store.workers[w].get("draining") for w in ("h100-a", "h100-b")),
            what="both H100 workers draining",
        )
        assert not app.store.workers["a100-a"].get("draining")
        # Re-add by label, from the palette this time: only the draining ones match.
        await choose_from_palette(pilot, "re-add by label")
        await until(pilot, lambda: isinstance(app.screen, LabelSelectScreen), what="prompt")
        await pilot.press(*"zone=a")
        await until(pilot, lambda: "1 worker matches zone=a:" in _preview(app), what="re-add match")
        assert "1 more worker matches but is not draining: left out" in _preview(app)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="re-add dialog")
        await pilot.press("y")
        await until(
            pilot, lambda: not app.store.workers["h100-a"].get("draining"), what="h100-a back"
        )
        assert app.store.workers["h100-b"].get("draining")
    for worker in workers:
        worker.close()


async def test_the_drain_dialog_follows_the_state_and_a_quick_y_is_typed_out_after_all(gateway):
    first = RawWorker(gateway.ws_url, "w1", ["m"])
    second = RawWorker(gateway.ws_url, "w2", ["m"])
    app = live_app(gateway.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: table(app).total_count == 2, what="two workers")
        assert table(app).move_cursor_to("w1")  # the cursor row is what d drains
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="dialog")
        dialog = app.screen

        def body() -> str:
            return str(dialog.query_one("#confirm-body", Static).render())

        assert "m: 1 of 2 workers ready after this" in body()
        second.close()  # the other worker goes while the dialog is open
        await until(pilot, lambda: "m: 0 of" in body(), what="the dialog's rows to follow")
        assert "m would have no ready worker" in body()
        await pilot.press("y")  # the dialog was a y/n one when it opened: now it is typed out
        await until(pilot, lambda: isinstance(app.screen, TypeToConfirmScreen), what="typed")
        assert app.screen.expected == "m"
        await pilot.press("escape")
        await pilot.pause()
        assert not app.store.workers["w1"].get("draining")
    first.close()


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_label_prompt_snapshot(snap_compare, size):
    async def open_prompt(pilot) -> None:
        await still(pilot)
        await pilot.press("2")
        await pilot.app.push_screen(
            LabelSelectScreen("drain", "gpu in (a100,h100), zone!=eu-west-1b")
        )
        await pilot.pause()
        pilot.app.screen.query_one(Input).cursor_blink = False
        await pilot.pause()

    assert snap_compare(snapshot_app(), terminal_size=size, run_before=open_prompt)
