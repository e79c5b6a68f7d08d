"""How the panel looks on a replica of a fleet (support/fleet_state.py: the sample spread over
three replicas, offline, so the pictures are deterministic): the Replicas view, Workers with
its REPLICA column, the drain dialog naming replicas; and the Replicas view of a single node."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatewaytui.tui.actions import worker_action_dialog
from support.fleet_state import fleet_app
from support.panel import SIZES, snapshot_app, still


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
@pytest.mark.parametrize("keys", [("0",), ("2",)], ids=["replicas", "workers"])
def test_fleet_views(snap_compare, tmp_path: Path, keys, size):
    assert snap_compare(fleet_app(tmp_path), press=keys, terminal_size=size, run_before=still)


def test_replicas_view_degraded(snap_compare, tmp_path: Path):
    app = fleet_app(tmp_path, degraded=True)
    assert snap_compare(app, press=("0",), terminal_size=(80, 24), run_before=still)


def test_replicas_view_on_a_single_node(snap_compare):
    assert snap_compare(snapshot_app(), press=("0",), terminal_size=(80, 24), run_before=still)


def test_fleet_drain_dialog(snap_compare, tmp_path: Path):
    async def open_dialog(pilot) -> None:
        await still(pilot)
        app = pilot.app
        dialog = worker_action_dialog(
            "drain", ["gpu-a100-01", "gpu-l4-02"], app.store.workers, app.store.models
        )
        await app.push_screen(dialog)
        await pilot.pause()

    app = fleet_app(tmp_path)
    assert snap_compare(app, press=("2",), terminal_size=(100, 30), run_before=open_dialog)
