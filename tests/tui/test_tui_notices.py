"""Bell / desktop notices (OSC 9, OSC 777): off by default, per context, rate-limited, and
written through Textual's driver as whole, clean sequences."""

from __future__ import annotations

import httpx

from gatewaytui.tui.app import GatewayApp
from gatewaytui.tui.config import ContextConfig, NotifyConfig, TuiConfig
from gatewaytui.tui.notices import Baseline, changes_worth_a_notice, escape_sequences
from support.panel import FAST, live_app, table
from support.raw_worker import RawWorker
from support.waiting import until


def _app(url: str, notify: NotifyConfig) -> GatewayApp:
    context = ContextConfig(name="prod", url=url, notify=notify)
    config = TuiConfig(contexts=[context], default_context="prod")
    return GatewayApp(config, context=context, connection_options=FAST)


def _capture(app: GatewayApp) -> list[str]:
    written: list[str] = []
    driver = app._driver
    assert driver is not None
    real = driver.write

    def write(data: str) -> None:
        written.append(data)
        real(data)

    driver.write = write  # type: ignore[method-assign]
    return written


def test_notices_are_off_by_default():
    assert not ContextConfig(name="x", url="http://127.0.0.1:1").notify.enabled


def test_sequences_and_a_hostile_name_cannot_escape_them():
    both = NotifyConfig(bell=True, desktop="osc9")
    assert escape_sequences(both, "gatewaytui p", "worker w gone") == (
        "\a\x1b]9;gatewaytui p: worker w gone\a"
    )
    osc777 = NotifyConfig(desktop="osc777")
    evil = "w\x1b]52;c;ZXZpbA==\a\nx"
    out = escape_sequences(osc777, "gatewaytui a;b", f"worker {evil} gone")
    assert out.startswith("\x1b]777;notify;gatewaytui a,b;worker w ]52")
    assert out.count("\x1b") == 1 and out.count("\a") == 1 and "\n" not in out


def test_inside_tmux_the_osc_is_wrapped_for_passthrough():
    config = NotifyConfig(bell=True, desktop="osc9")
    assert escape_sequences(config, "t", "b", tmux=True) == ("\a\x1bPtmux;\x1b\x1b]9;t: b\a\x1b\\")


def test_what_counts_as_worse():
    before = Baseline(gone={"old"}, present={"old", "a", "b"}, served={"m", "n"}, draining=False)
    now = Baseline(gone={"old", "a", "new"}, present={"old", "a", "b", "new"},
                   served={"n", "k"}, draining=True)  # fmt: skip
    assert changes_worth_a_notice(before, now) == [
        "worker a gone",  # "new" arrived already gone: not a change we saw happen
        "model m has no ready worker",
        "the server is draining",
    ]
    assert changes_worth_a_notice(now, now) == []


async def test_gone_worker_last_ready_worker_and_server_drain_ring(gateway, monkeypatch):
    monkeypatch.delenv("TMUX", raising=False)
    first = RawWorker(gateway.ws_url, "w1", ["m"])
    second = RawWorker(gateway.ws_url, "w2", ["m"])
    app = _app(gateway.url, NotifyConfig(bell=True, desktop="osc777", min_interval_s=1))
    async with app.run_test(size=(120, 40)) as pilot:
        written = _capture(app)
        await pilot.press("2")
        await until(pilot, lambda: table(app).total_count == 2, what="two workers")
        first.close()
        await until(pilot, lambda: written, what="a notice")
        assert written[0] == "\a\x1b]777;notify;gatewaytui prod;worker w1 gone\a"
        second.close()  # within the interval: held, then sent as one notice
        await until(pilot, lambda: len(written) == 2, timeout=10, what="the second notice")
        assert written[1] == ("\a\x1b]777;notify;gatewaytui prod;worker w2 gone (+1 more)\a")
        assert app.chrome.notices.sent[-1] == "worker w2 gone (+1 more)"
        httpx.post(gateway.url + "/api/server/drain", timeout=5).raise_for_status()
        await until(pilot, lambda: len(written) == 3, timeout=10, what="the drain notice")
        assert written[2].endswith(";the server is draining\a")


async def test_a_context_without_notify_writes_nothing(gateway):
    worker = RawWorker(gateway.ws_url, "w1", ["m"])
    app = live_app(gateway.url)
    async with app.run_test(size=(120, 40)) as pilot:
        written = _capture(app)
        await pilot.press("2")
        await until(pilot, lambda: table(app).total_count == 1, what="the worker")
        worker.close()
        await until(pilot, lambda: app.store.workers["w1"].get("status") == "gone", what="gone")
        await pilot.pause()
        assert not [w for w in written if "\a" in w or "\x1b]9" in w or "\x1b]777" in w]
        assert app.chrome.notices.sent == []
