"""The panel on a replica of a fleet (issue 12, the panel): the Replicas view, the REPLICA
column of Workers, Jobs and MCP (filter, sort; absent on a single node), fleet-wide header
counts and the degraded banner, and dialogs that name the replica holding each row."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text

from gatewaytui.tui.actions import (
    cancel_job_dialog,
    scope_dialog,
    server_dialog,
    worker_action_dialog,
)
from gatewaytui.tui.screens.replica_detail import ReplicaDetailScreen
from gatewaytui.tui.screens.scope import ScopeScreen
from gatewaytui.tui.widgets.banner import ConnectionBanner
from gatewaytui.tui.widgets.virtual_table import VirtualTable
from support.fleet_state import fleet_app
from support.panel import choose_from_palette, header_text, offline_app, screen_lines, table
from support.waiting import until


def _header_row(app) -> list[str]:
    return table(app).render_line(0).text.split()


async def test_a_single_node_has_no_replica_column_and_says_it_is_not_clustered():
    app = offline_app()
    async with app.run_test(size=(120, 40)) as pilot:
        for key in ("2", "3", "4"):
            await pilot.press(key)
            assert "REPLICA" not in _header_row(app), key
        await pilot.press("5")
        clients = app.query_one("#mcp-clients-table", VirtualTable)
        assert "REPLICA" not in clients.render_line(0).text
        await pilot.press("0")
        assert app.current_view.view_id == "replicas"
        note = app.query_one("#replicas-note")
        assert note.has_class("-shown")
        assert "not clustered" in str(note.render()) and "cluster.redis_url" in str(note.render())
        assert "replicas" not in header_text(app).split("›")[0]  # no fleet counts


async def test_the_replicas_view_lists_the_fleet(tmp_path: Path):
    app = fleet_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("0")
        replicas = table(app)
        assert replicas.visible_ids == ("gw-1", "gw-2", "gw-3")
        assert not app.query_one("#replicas-note").has_class("-shown")
        header = _header_row(app)
        for label in ("REPLICA", "STATUS", "ADVERTISE", "WORKERS", "JOBS", "LOAD", "SEEN"):
            assert label in header
        line = replicas.render_line(1).text
        assert "gw-1 (here)" in line and "http://10.0.0.11:8080" in line and "ready" in line
        # o / O sort and the / filter work as in every table
        replicas.sort_by("id", True)
        assert replicas.visible_ids == ("gw-3", "gw-2", "gw-1")
        await pilot.press("slash", *"10.0.0.12", "enter")
        assert replicas.visible_ids == ("gw-2",)
        await pilot.press("escape")
        # enter: the replica in full, with the workers it holds
        replicas.move_cursor_to("gw-2")
        replicas.focus()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ReplicaDetailScreen), what="details")
        await pilot.pause()
        body = "\n".join(screen_lines(app.screen.query_one("#replica-body")))
        held = sorted(w["id"] for w in app.store.workers.values() if w["replica"] == "gw-2")
        assert "http://10.0.0.12:8080" in body and all(w in body for w in held)
        await pilot.press("escape")
        assert not isinstance(app.screen, ReplicaDetailScreen)


async def test_workers_jobs_and_mcp_show_filter_and_sort_by_replica(tmp_path: Path):
    app = fleet_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        store = app.store
        await pilot.press("2")
        workers = table(app)
        assert "REPLICA" in _header_row(app)
        await pilot.press("slash", *"^gw-2$", "enter")
        on_two = {w["id"] for w in store.workers.values() if w["replica"] == "gw-2"}
        assert set(workers.visible_ids) == on_two and on_two
        await pilot.press("escape")
        workers.sort_by("replica")
        order = [store.workers[w]["replica"] for w in workers.visible_ids]
        assert order == sorted(order)

        await pilot.press("3")
        jobs = table(app)
        assert "REPLICA" in _header_row(app)
        await pilot.press("slash", *"gw-3", "enter")
        assert set(jobs.visible_ids) == {
            j["id"] for j in store.jobs.values() if j["replica"] == "gw-3"
        }
        await pilot.press("escape")

        await pilot.press("5")
        clients = app.query_one("#mcp-clients-table", VirtualTable)
        assert "REPLICA" in clients.render_line(0).text
        clients.sort_by("replica", True)
        order = [store.items["mcp_clients"][c]["replica"] for c in clients.visible_ids]
        assert order == sorted(order, reverse=True)


async def test_the_header_counts_the_whole_fleet(tmp_path: Path):
    app = fleet_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        store = app.store
        serving = sum(
            1 for w in store.workers.values() if w["status"] in ("connected", "idle", "working")
        )
        queued = sum(1 for j in store.jobs.values() if j.get("state") == "queued")
        header = header_text(app)
        assert f"workers {serving}/{len(store.workers)}" in header
        assert f"jobs {len(store.jobs)}" in header
        assert f"queue {queued}/600" in header  # 200 a replica, 3 replicas
        assert "replicas 3/3" in header and "degraded" not in header
        assert not app.query_one(ConnectionBanner).has_class("-visible")


async def test_a_degraded_replica_says_so_in_header_banner_and_view(tmp_path: Path):
    app = fleet_app(tmp_path, degraded=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert "replicas 2/3 ▲ degraded" in header_text(app)
        banner = app.query_one(ConnectionBanner)
        assert banner.has_class("-visible")
        assert "Fleet degraded" in str(banner.render()) and "gw-1" in str(banner.render())
        await pilot.press("0")
        assert not app.query_one("#replicas-note").has_class("-shown")  # the banner says it
        line = table(app).render_line(1).text
        assert "gw-1 (here)" in line and "▲ degraded" in line
        # The others are as last heard, not live: `? ready`, and their workers `? <status>`.
        others = [table(app).render_line(y).text for y in (2, 3)]
        assert all("? ready" in line for line in others), others
        await pilot.press("2")
        await until(pilot, lambda: table(app).total_count == len(app.store.workers))
        shown = {row: table(app).get_row(row) for row in table(app).visible_ids}
        lines = "\n".join(screen_lines(table(app)))
        for worker_id, worker in shown.items():
            status = worker["status"].replace("_", " ")
            line = next(line for line in lines.splitlines() if f" {worker_id} " in line)
            stale = worker["replica"] != "gw-1"
            assert (f"? {status}" in line) is stale, line


async def test_a_drain_of_a_worker_on_a_replica_out_of_reach_warns_first(tmp_path: Path):
    app = fleet_app(tmp_path, degraded=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        store = app.store
        far = next(w for w, row in store.workers.items() if row["replica"] != "gw-1")
        near = next(w for w, row in store.workers.items() if row["replica"] == "gw-1")
        args = (store.workers, store.models, store.server)
        warned = str(worker_action_dialog("drain", [far, near], *args).body)
        assert "cannot reach Redis: 1 worker above on other replicas" in warned
        assert "cannot reach Redis" not in str(worker_action_dialog("drain", [near], *args).body)


async def test_dialogs_name_the_replica(tmp_path: Path):
    app = fleet_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        store = app.store
        ids = ["gpu-a100-01", "gpu-a100-02", "gpu-l4-02"]
        body = Text(str(worker_action_dialog("drain", ids, store.workers, store.models).body))
        for worker_id in ids:
            replica = store.workers[worker_id]["replica"]
            line = next(line for line in body.plain.splitlines() if worker_id in line)
            assert line.endswith(f"on replica {replica}"), line
        assert "on replica" in str(worker_action_dialog("undrain", ids, store.workers).body)

        job = next(j for j in store.jobs.values() if j.get("worker") and j["replica"] == "gw-2")
        text = str(cancel_job_dialog(job, app.now()).body)
        assert f"on {job['worker']} (replica gw-2), running for" in text
        queued = {**job, "state": "queued"}
        assert "on replica gw-2, waiting for a free" in str(cancel_job_dialog(queued, 0).body)

        scope = scope_dialog("drain", "gw-1", 3)
        chosen_scopes: list[object] = []
        await app.push_screen(scope, chosen_scopes.append)
        await pilot.pause()
        labels = [str(b.label) for b in scope.query("Button")]
        assert labels == ["Cancel (n)", "Replica gw-1 (r)", "All 3 replicas (f)"]
        assert app.focused is not None and app.focused.id == "cancel"  # the default: Cancel
        await pilot.press("f")
        await until(pilot, lambda: chosen_scopes == ["fleet"], what="the fleet chosen")
        assert not isinstance(app.screen, ScopeScreen)

        fleet = server_dialog("drain", "prod", 20, "fleet", "gw-1")
        assert fleet.title_text == "Drain the whole fleet 'prod'?" and fleet.expected == "prod"
        one = server_dialog("drain", "prod", 4, "replica", "gw-1")
        assert one.title_text == "Drain replica 'gw-1'?"
        assert "The other replicas keep serving" in str(one.body)
        single = server_dialog("drain", "prod", 4)  # a single node: as it always was
        assert single.title_text == "Drain the whole gateway 'prod'?"


def test_single_node_dialogs_do_not_mention_replicas():
    from gatewaytui.client.store import StateStore
    from support.paths import SAMPLE

    store = StateStore.load(SAMPLE)
    ids = list(store.workers)[:3]
    assert "replica" not in str(
        worker_action_dialog("drain", ids, store.workers, store.models).body
    )
    job = next(iter(store.jobs.values()))
    assert "replica" not in str(cancel_job_dialog(job, 0).body)


async def test_the_palette_opens_the_replicas_view(tmp_path: Path):
    app = fleet_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await choose_from_palette(pilot, "View: Replicas")
        assert app.current_view.view_id == "replicas"


async def test_worker_and_job_details_name_their_replica(tmp_path: Path):
    app = fleet_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        assert table(app).move_cursor_to("gpu-l40s-02")
        await pilot.press("enter")
        await until(pilot, lambda: app.screen.query("#detail-body"), what="worker details")
        await pilot.pause()
        body = "\n".join(screen_lines(app.screen.query_one("#detail-body")))
        holder = app.store.workers["gpu-l40s-02"]["replica"]
        assert any(line.split()[:2] == ["replica", holder] for line in body.splitlines()), body
        await pilot.press("escape")
        await pilot.press("3")
        job = "emb-018215-7c41e2"
        assert table(app).move_cursor_to(job)
        await pilot.press("enter")
        await until(pilot, lambda: app.screen.query("#job-body"), what="job details")
        await pilot.pause()
        body = "\n".join(screen_lines(app.screen.query_one("#job-body")))
        holder = app.store.jobs[job]["replica"]
        assert any(line.split()[:2] == ["replica", holder] for line in body.splitlines()), body


def test_hidden_columns_leave_the_layout_and_come_back():
    from gatewaytui.tui.widgets.table_layout import ColumnLayout
    from gatewaytui.tui.widgets.table_model import Column

    columns = [Column(k, k.upper(), lambda r: "", width=10) for k in ("id", "replica", "load")]
    layout = ColumnLayout(columns)
    assert [i for i, _ in layout(80)] == [0, 1, 2]
    assert layout.hide(frozenset({1})) and [i for i, _ in layout(80)] == [0, 2]
    assert not layout.hide(frozenset({1}))  # unchanged: the cached layouts stay
    assert not layout.hide(frozenset({0, 1, 2}))  # never every column
    assert layout.hide(frozenset()) and [i for i, _ in layout(80)] == [0, 1, 2]


def test_event_details_name_the_replica():
    from rich.console import Console

    from gatewaytui.tui.screens.event_detail import describe_event

    def text(event: dict[str, object]) -> str:
        console = Console(width=100, record=True)
        console.print(describe_event(event))
        return console.export_text()

    event = {"id": 7, "ts": "2026-11-21T09:29:59Z", "kind": "connect", "message": "hi"}
    assert "replica" not in text(event)
    assert any(
        line.split()[:2] == ["replica", "gw-2"]
        for line in text({**event, "replica": "gw-2"}).splitlines()
    )


async def test_w_on_a_replica_shows_its_workers(tmp_path: Path):
    app = fleet_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("0")
        assert table(app).move_cursor_to("gw-2")
        await pilot.press("w")
        await until(pilot, lambda: app.current_view.view_id == "workers", what="Workers")
        workers = table(app)
        held = {w["id"] for w in app.store.workers.values() if w["replica"] == "gw-2"}
        await until(pilot, lambda: set(workers.visible_ids) == held, what="gw-2's workers")
        assert "filter /^gw\\-2$/" in header_text(app)
        await pilot.press("escape")  # as any filter
        await until(pilot, lambda: workers.visible_count == len(app.store.workers), what="all")
