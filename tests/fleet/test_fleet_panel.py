"""The panel on a real fleet: three replicas in processes sharing a real redis-server, a
worker on each, the panel (Pilot) connected to r1 like any client. It shows the Replicas
view filled, the REPLICA column, drains r2's worker through r1 from the dialog that names r2,
and drains the whole fleet after asking this replica or all of them."""

from __future__ import annotations

from typing import Any

import httpx
from rich.text import Text

from gatewaytui.client.http import GatewayClient
from gatewaytui.tui.screens.confirm import ConfirmScreen
from gatewaytui.tui.screens.scope import ScopeScreen
from gatewaytui.tui.screens.type_confirm import TypeToConfirmScreen
from support.fleet import Replica, wait_until, workers_by_id
from support.panel import live_app, table
from support.waiting import until

OWNERS = {"w1": "r1", "w2": "r2", "w3": "r3"}


def _fleet_seen(replica: Replica) -> bool:
    state = replica.state()
    workers = workers_by_id(state)
    held = {w: workers[w]["replica"] for w in OWNERS if w in workers}
    counted = {r["id"]: r["workers"] for r in state["replicas"]}
    return held == OWNERS and counted == {"r1": 1, "r2": 1, "r3": 1}


async def test_the_panel_shows_and_acts_on_the_fleet(fleet: Any) -> None:
    replicas, worker = fleet
    r1, r2, r3 = replicas
    for worker_id, owner in OWNERS.items():
        worker(worker_id, replicas[int(owner[1]) - 1])
    wait_until(lambda: _fleet_seen(r1), 20, "r1 to see the three replicas and their workers")

    app = live_app(r1.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("0")
        rows = table(app)
        await until(pilot, lambda: rows.visible_ids == ("r1", "r2", "r3"), what="replicas")
        lines = {rid: rows.render_line(n + 1).text for n, rid in enumerate(rows.visible_ids)}
        assert "r1 (here)" in lines["r1"] and r1.url in lines["r1"] and "ready" in lines["r1"]
        assert r2.url in lines["r2"] and r3.url in lines["r3"]

        await pilot.press("2")
        workers = table(app)
        await until(pilot, lambda: workers.total_count == 3, what="the three workers")
        assert "REPLICA" in workers.render_line(0).text.split()
        workers.move_cursor_to("w2")
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="drain dialog")
        assert "on replica r2" in Text(str(app.screen.body)).plain
        await pilot.press("y")

        # The panel sees it: r2 drained w2 for r1 and published it to the fleet.
        await until(pilot, lambda: bool(app.store.workers["w2"].get("draining")), what="w2")
        assert workers_by_id(r2.state())["w2"]["draining"] is True

        app.actions.request_server_action("drain")  # what the palette runs
        await until(pilot, lambda: isinstance(app.screen, ScopeScreen), what="scope question")
        await pilot.press("f")
        await until(pilot, lambda: isinstance(app.screen, TypeToConfirmScreen), what="typed")
        assert app.screen.title_text == "Drain the whole fleet 'test'?"
        await pilot.press(*"test", "enter")

        def all_draining() -> bool:
            return all(httpx.get(r.url + "/readyz", timeout=2).status_code == 503 for r in replicas)

        await until(pilot, all_draining, what="every replica draining")

    async with GatewayClient(r1.url) as client:  # the client call the panel makes, directly
        result = await client.undrain_server(scope="fleet")
    assert result.target == "fleet" and set(result.details["replicas"]) == {"r1", "r2", "r3"}
    wait_until(lambda: r3.state()["server"]["draining"] is False, 10, "r3 undrained")
