"""The Overview under Pilot: its alerts (growing queue, stale heartbeats, unreachable
gateway), no rate from a single snapshot, and no redraw while nothing moves."""

from __future__ import annotations

from gatewaytui.tui.app import GatewayApp
from gatewaytui.tui.config import TuiConfig
from support.panel import (
    beat,
    live_app,
    offline_app,
    screen_lines,
)
from support.paths import SAMPLE
from support.raw_worker import RawWorker
from support.waiting import until


def alerts_text(app: GatewayApp) -> str:
    return "\n".join(screen_lines(app.query_one("#alerts")))


async def test_overview_alerts_a_growing_queue(monkeypatch):
    app = offline_app()
    async with app.run_test(size=(120, 40)) as pilot:
        view = app.current_view
        # The test feeds the samples: the app's own 1 Hz sample (the snapshot's queue of 2, at
        # the real clock) landing between them would break the growth it draws.
        monkeypatch.setattr(view, "background_tick", lambda store: None)
        assert "queue growing" not in alerts_text(app)
        server = dict(app.store.server)
        for length in range(1, 11):  # ten samples a second apart, each longer
            view.throughput.sample({**server, "queue": {"length": length}}, float(length))
        view.tick()
        await until(
            pilot, lambda: "▲ queue growing: 10 waiting" in alerts_text(app), what="the alert"
        )
        view.throughput.sample({**server, "queue": {"length": 3}}, 11.0)  # it drains
        view.tick()
        await until(pilot, lambda: "queue growing" not in alerts_text(app), what="no alert")


async def test_overview_alerts_stale_heartbeats(tmp_path):
    import json

    state = json.loads(SAMPLE.read_text())
    late = next(w for w in state["workers"] if w["status"] == "idle")
    late["last_heartbeat"] = "2026-11-21T09:28:00.000Z"  # two minutes before the snapshot
    path = tmp_path / "stale.json"
    path.write_text(json.dumps(state))
    app = GatewayApp(TuiConfig(), snapshot=path, read_only=True)
    async with app.run_test(size=(120, 40)) as pilot:
        app.current_view.tick()
        await pilot.pause()
        stale_after = app.heartbeat_stale_after
        assert f"▲ stale heartbeat (> {stale_after:g}s): {late['id']}" in alerts_text(app)
        await pilot.press("2")
        assert beat(app, late["id"]).plain == "2m00s" and beat(app, late["id"]).style == "bold red"


async def test_an_idle_overview_redraws_nothing(monkeypatch):
    app = offline_app()
    async with app.run_test(size=(120, 40)) as pilot:
        view = app.current_view
        for _ in range(3):  # the first samples: the labels get their figures once
            view.background_tick(app.store)
            view.tick()
        await pilot.pause()
        redrawn: list[str] = []
        for widget in view.query("Static, Sparkline"):
            monkeypatch.setattr(widget, "refresh", lambda *a, w=widget, **k: redrawn.append(w.id))
        for _ in range(5):  # nothing moves: no request, no token, the same alerts
            view.background_tick(app.store)
            view.tick()
        assert redrawn == []


async def test_a_snapshot_shows_no_rate_rather_than_zero():
    """One snapshot has no two samples to take a rate from: `-`, not a misleading 0.0."""
    from textual.widgets import Static

    app = offline_app()
    async with app.run_test(size=(120, 40)) as pilot:
        view = app.current_view
        view.tick()
        view.tick()
        await pilot.pause()
        label = str(view.query_one("#req-label", Static).render())
        assert label.strip() == "requests/s  -"
        assert str(view.query_one("#tok-label", Static).render()).strip() == "tokens/s  -"


async def test_the_overview_says_when_the_gateway_cannot_be_reached(make_gateway):
    """Alerts from a stale state must not read 'nothing needs attention' while disconnected."""
    from textual.widgets import Static

    gateway = make_gateway()
    RawWorker(gateway.ws_url, "w", ["m"])
    app = live_app(gateway.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.session.state.live, what="live")
        alerts_box = app.current_view.query_one("#alerts", Static)
        app.current_view.tick()
        assert "not connected" not in str(alerts_box.render())
        gateway.stop()
        await until(pilot, lambda: not app.session.state.live, what="disconnected")
        app.current_view.tick()
        await pilot.pause()
        alert = str(alerts_box.render())
        assert "✖ not connected to the gateway (reconnecting, data " in alert  # and how old
        assert " old): what follows is the last known state" in alert


async def test_a_refused_token_before_any_state_says_there_is_none(make_gateway, monkeypatch):
    from textual.widgets import Static

    gateway = make_gateway(server__operator_tokens="right")
    monkeypatch.setenv("OV_TOKEN", "wrong")
    app = live_app(gateway.url, token_env="OV_TOKEN")
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.session.state.status.value == "unauthorized")
        alerts_box = app.current_view.query_one("#alerts", Static)
        app.current_view.tick()
        await pilot.pause()
        alert = str(alerts_box.render())
        assert "(unauthorized): no state received yet" in alert, alert
        assert "last known state" not in alert


async def test_failing_is_a_share_of_recent_jobs_not_any_failure(monkeypatch):
    """The sample's workers have past failures: no alert until the panel sees a fifth of a
    worker's recent jobs fail (totals growing under it), with the configured threshold."""
    from gatewaytui.tui.config import AlertsConfig

    app = GatewayApp(
        TuiConfig(alerts=AlertsConfig(failing_share=0.5, failing_min_jobs=4)),
        snapshot=SAMPLE,
        read_only=True,
    )
    async with app.run_test(size=(120, 40)) as pilot:
        view = app.current_view
        # The test owns the clock of the samples: the app's own 1 Hz sample (the snapshot's
        # totals, at the real monotonic clock) landing between the fake-time samples below
        # would look like totals going back and restart the window. Only the test samples.
        sample_now = view.background_tick
        monkeypatch.setattr(view, "background_tick", lambda store: None)
        sample_now(app.store)
        view.tick()
        await pilot.pause()
        assert "failing" not in alerts_text(app)
        rates = view.failure_rates
        assert (rates.threshold, rates.min_jobs) == (0.5, 4)
        worker = app.store.items["workers"]["gpu-a100-01"]
        ok, bad = worker["processed"], worker["failures"]
        rates.sample({"gpu-a100-01": {"processed": ok + 3, "failures": bad + 2}}, 10**9)
        rates.sample({"gpu-a100-01": {"processed": ok + 3, "failures": bad + 2}}, 10**9 + 30)
        view.tick()
        await pilot.pause()
        assert "failing" not in alerts_text(app)  # 2 of 5 is under a half
        rates.sample({"gpu-a100-01": {"processed": ok + 3, "failures": bad + 5}}, 10**9 + 60)
        view.tick()
        await pilot.pause()
        assert "▲ gpu-a100-01 failing: 5 of 8 jobs (62%)" in alerts_text(app)
