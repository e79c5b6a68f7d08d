"""Never a wrong picture across a gateway's failure: the panel (with the product's connection
defaults) on a real `gatewaytui serve` process that is SIGKILLed and restarted on the same
port, or SIGSTOPped, with simulated worker processes dialled in. Every frame the panel
composes is recorded (what the header says, which rows the Workers table holds), so the
tests judge what an operator would have seen, frame by frame, not just the end state."""

from __future__ import annotations

import re
import time

from gatewaytui.client.connection import ConnectionStatus
from gatewaytui.tui.app import GatewayApp
from gatewaytui.tui.config import ContextConfig, TuiConfig
from gatewaytui.tui.widgets.banner import ConnectionBanner
from gatewaytui.tui.widgets.header import GatewayHeader
from support.frames import FrameLog, whole
from support.gateway_process import AnswerWatch, GatewayProcess, SimWorkerProcess
from support.panel import header_text
from support.waiting import until


def panel(url: str) -> GatewayApp:
    context = ContextConfig(name="lab", url=url)
    return GatewayApp(TuiConfig(contexts=[context], default_context="lab"), context=context)


async def test_a_killed_gateway_restarted_under_the_panel_comes_back_whole(tmp_path):
    gateway = GatewayProcess(tmp_path).start()
    workers = [SimWorkerProcess(f"w{i}", gateway, tmp_path) for i in range(3)]  # type: ignore[arg-type]
    app = panel(gateway.url)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            log = FrameLog(app)
            await pilot.press("2")
            await until(pilot, lambda: "workers 3/3" in header_text(app), what="3 workers")
            await until(pilot, lambda: "● ready" in header_text(app), what="ready")

            gateway.kill()
            workers[2].stop()  # it will not come back: its row must not either
            await until(pilot, lambda: "◌ reconnecting" in header_text(app), 5, "reconnecting")
            await until(pilot, lambda: " old" in header_text(app), 5, "the data's age")
            down = header_text(app)
            assert "● ready" not in down and "? unknown" in down
            assert re.search(r"data \d+s old", down), down
            banner = app.query_one(ConnectionBanner)
            await until(pilot, lambda: banner.has_class("-visible"), 5, "the banner")
            assert "stale" in str(banner.render())
            # Past the early retries: the backoff would now wait seconds without its probe.
            await until(pilot, lambda: app.session.state.attempt >= 4, 20, "a few retries")
            noticed = next(f.at for f in log.frames if "◌ reconnecting" in f.header)
            assert not any("● ready" in f.header for f in log.since(noticed))

            watch = AnswerWatch(gateway.url)
            restarted = time.monotonic()
            gateway.start(wait=False)
            try:
                await until(pilot, lambda: app.session.state.live, 60, "live again")
                await until(pilot, lambda: watch.answered_at is not None, 5, "the gateway")
                await until(pilot, lambda: "workers 2/2" in header_text(app), 30, "2 workers")
            finally:
                watch.stop()
            assert watch.answered_at is not None
            after = log.since(restarted)
            first_live = next(f for f in after if "● live" in f.header)
            back = first_live.at - watch.answered_at
            # 0.3-0.4 s on a loaded machine (load 19 on 2 cores); bench/tui_app.py holds the
            # 1 s target. The bound here only has to tell the probe from the old backoff
            # (4-5 s) without failing when test runs share the machine.
            assert back <= 2.5, f"the first live frame came {back:.2f} s after the gateway answered"
            # (Not asserted: that the probe, rather than an early capped retry, woke the
            # reconnect. Either may come first on a busy machine; the bound above is the point.)
            assert first_live.status is ConnectionStatus.LIVE
            assert whole(first_live), first_live
            assert "? unknown" not in first_live.header and "old" not in first_live.header
            for frame in log.frames:  # never a header that disagrees with its rows
                assert whole(frame), frame
            assert not any("w2" in f.rows for f in log.since(first_live.at)), "a stale row"
            assert "w2" not in app.store.workers
    finally:
        for worker in workers:
            worker.stop()
        gateway.stop()


async def test_a_stopped_gateway_reads_unknown_within_3_s_and_comes_back(tmp_path):
    gateway = GatewayProcess(tmp_path).start()
    worker = SimWorkerProcess("w0", gateway, tmp_path)  # type: ignore[arg-type]
    app = panel(gateway.url)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            header = app.query_one(GatewayHeader)
            await until(pilot, lambda: "● ready" in header_text(app), what="ready")
            height = header.size.height
            gateway.pause()
            stopped = time.monotonic()
            await until(pilot, lambda: "? unknown" in header_text(app), 10, "unknown")
            reported = time.monotonic() - stopped
            assert reported <= 3.0, f"reported {reported:.2f} s after SIGSTOP"
            assert "● ready" not in header_text(app)
            assert header.size.height == height  # 80x24: the header keeps its height
            gateway.resume()
            resumed = time.monotonic()
            await until(pilot, lambda: "● live" in header_text(app), 10, "live again")
            back = time.monotonic() - resumed
            assert back <= 2.5, f"live {back:.2f} s after SIGCONT"
            assert "● ready" in header_text(app)
    finally:
        worker.stop()
        gateway.stop()


async def test_rates_read_unknown_while_the_gateway_cannot_be_reached():
    from textual.widgets import Static

    from support.gateway_process import SilentListener

    silent = SilentListener()  # never answers: no rate can be known
    app = panel(silent.url)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            view = app.current_view
            for _ in range(3):  # three samples would make a rate of a live gateway
                view.background_tick(app.store)
                view.tick()
            await pilot.pause()
            assert str(view.query_one("#req-label", Static).render()).strip() == "requests/s  -"
            assert str(view.query_one("#tok-label", Static).render()).strip() == "tokens/s  -"
    finally:
        silent.close()
