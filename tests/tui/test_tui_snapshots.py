"""How the panel looks: every view at 120x40 and 80x24, from sample_state.json (offline, so
ages are measured from the snapshot's own time and the pictures are deterministic)."""

from __future__ import annotations

import pytest

from gatewaytui.tui.actions import worker_action_dialog
from support.panel import SIZES, snapshot_app, still


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
@pytest.mark.parametrize(
    "keys",
    [("1",), ("2",), ("3",), ("4",)],
    ids=["overview", "workers", "jobs", "events"],
)
def test_views(snap_compare, keys, size):
    assert snap_compare(snapshot_app(), press=keys, terminal_size=size, run_before=still)


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_worker_details(snap_compare, size):
    assert snap_compare(
        snapshot_app(), press=("2", "down", "enter"), terminal_size=size, run_before=still
    )


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_job_details(snap_compare, size):
    async def open_job(pilot) -> None:
        await still(pilot)
        await pilot.press("3")
        pilot.app._deck.table().move_cursor_to("emb-018215-7c41e2")
        await pilot.press("enter")
        await pilot.pause()

    assert snap_compare(snapshot_app(), terminal_size=size, run_before=open_job)


def test_filter_and_marks(snap_compare):
    keys = ("2", "slash", *"gpu-(a|h)100", "enter", "space", "space")
    assert snap_compare(snapshot_app(), press=keys, terminal_size=(120, 40), run_before=still)


def test_help(snap_compare):
    assert snap_compare(snapshot_app(), press=("question_mark",), terminal_size=(100, 30))


def test_drain_dialog(snap_compare):
    async def open_dialog(pilot) -> None:
        await still(pilot)
        app = pilot.app
        dialog = worker_action_dialog(
            "drain", ["gpu-a100-01", "gpu-l4-02"], app.store.workers, app.store.models
        )
        await app.push_screen(dialog)
        await pilot.pause()

    assert snap_compare(
        snapshot_app(), press=("2",), terminal_size=(100, 30), run_before=open_dialog
    )


# ---- backends ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_backends_view(snap_compare, size):
    assert snap_compare(snapshot_app(), press=("6",), terminal_size=size, run_before=still)


def _backend_form(backend_id: str | None, *keys: str):
    """Open the backend form over the sample (edit `backend_id`, or add), then type `keys`."""
    from gatewaytui.tui.screens.backend_form import BackendFormScreen

    async def open_form(pilot) -> None:
        await still(pilot)
        await pilot.press("6")
        app = pilot.app
        initial = app.store.items["backends"][backend_id] if backend_id else None
        await app.push_screen(BackendFormScreen(initial))
        await pilot.pause()
        for widget in app.screen.query("Input"):
            widget.cursor_blink = False
        await pilot.press(*keys)
        await pilot.pause()

    return open_form


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_backend_edit_form(snap_compare, size):
    assert snap_compare(snapshot_app(), terminal_size=size, run_before=_backend_form("vllm-prod"))


def test_backend_add_form_with_errors(snap_compare):
    keys = ("b", "a", "d", " ", "i", "d", "tab", "tab", *"ftp://10.0.0.5")
    assert snap_compare(
        snapshot_app(), terminal_size=(120, 40), run_before=_backend_form(None, *keys)
    )
