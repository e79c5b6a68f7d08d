"""Detail screens and the actions taken from them: a job's detail and cancel, a worker's
drain, an event's whole message, and a refused action's reason shown literally."""

from __future__ import annotations

from textual.widgets._toast import Toast

from gatewaytui.client.errors import ActionError
from gatewaytui.tui.app import GatewayApp
from support.panel import (
    footer_keys,
    header_text,
    live_app,
    offline_app,
    screen_lines,
    settle,
    table,
)
from support.raw_worker import RawWorker
from support.waiting import until


def toast_texts(app: GatewayApp) -> list[str]:
    return [str(toast.render()) for toast in app.screen.query(Toast)]


async def test_a_refused_drain_shows_the_reason_literally(gateway, monkeypatch):
    RawWorker(gateway.ws_url, "w", ["m"])
    RawWorker(gateway.ws_url, "w2", ["m"])  # not the last ready worker: a plain y / n dialog
    reason = "worker 'w' refused: GET [/x] failed; [@click=app.quit]press[/] [bold]"

    async def refuse(worker_id: str):
        raise ActionError(409, reason)

    app = live_app(gateway.url)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: table(app).total_count == 2, what="workers")
        assert table(app).move_cursor_to("w")
        monkeypatch.setattr(app.session, "drain_worker", refuse)
        await pilot.press("d", "y")
        await until(pilot, lambda: any("refused" in t for t in toast_texts(app)), what="toast")
        await pilot.pause()
        (shown,) = [t for t in toast_texts(app) if "refused" in t]
        assert "[/x]" in shown and "[@click=app.quit]press[/]" in shown and "[bold]" in shown
        await pilot.click(Toast)  # a click on it dismisses it; it is not a link to app.quit
        await pilot.pause()
        assert app.is_running
        assert "w" in header_text(app)


async def test_enter_on_a_job_shows_all_of_it():
    from gatewaytui.tui.screens.job_detail import JobDetailScreen

    app = offline_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3")
        assert table(app).move_cursor_to("emb-018215-7c41e2")
        await pilot.press("enter")
        assert isinstance(app.screen, JobDetailScreen)
        await pilot.pause()
        text = "\n".join(screen_lines(app.screen.query_one("#job-body")))
        for expected in (
            "emb-018215-7c41e2",
            "embeddings",
            "nomic-embed-text",
            "gpu-l40s-02",  # the worker, with its status
            "gpu-l4-01, gpu-l4-02",  # the other workers of the partitioned job
            "2026-11-21 09:28:55 UTC",  # started
            "1m04s",  # elapsed, from the snapshot's own time
            "stream     no",
            "184,907 in / 0 out",
            "3,840/4,096 items",
            "40 done, 3 in flight, 1 failed",
            "10.0.9.14:52210",  # the client's address
        ):
            assert expected in text, expected
        assert "Cancel job" not in footer_keys(app)  # a snapshot: nothing to cancel
        await pilot.press("escape")
        assert not isinstance(app.screen, JobDetailScreen)
        assert app.current_view.view_id == "jobs"


async def test_cancel_a_job_from_its_detail_screen(gateway):
    import threading

    import httpx

    from gatewaytui.tui.screens.confirm import ConfirmScreen
    from gatewaytui.tui.screens.job_detail import JobDetailScreen

    worker = RawWorker(gateway.ws_url, "w", ["m"])
    results: list = []

    def chat() -> None:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        results.append(httpx.post(gateway.url + "/v1/chat/completions", json=body, timeout=30))

    thread = threading.Thread(target=chat)
    thread.start()
    job = worker.next_job()
    app = live_app(gateway.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3")
        await until(pilot, lambda: table(app).total_count == 1, what="job")
        await until(pilot, lambda: app._role is not None, what="role")
        await pilot.press("enter")
        assert isinstance(app.screen, JobDetailScreen)
        body = app.screen.query_one("#job-body")
        await until(pilot, lambda: "stream     yes" in "\n".join(screen_lines(body)))
        lines = "\n".join(screen_lines(body))
        assert job["job_id"] in lines and "127.0.0.1:" in lines  # the client's address
        await settle(pilot)
        assert "Cancel job" in footer_keys(app)
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        assert job["job_id"] in str(app.screen.body)
        await pilot.press("y")
        assert worker.cancels.get(timeout=20)["job_id"] == job["job_id"]
        await until(
            pilot,
            lambda: "no longer in flight" in "\n".join(screen_lines(body)),
            what="the job ended",
        )
        assert isinstance(app.screen, JobDetailScreen)
        ended = "\n".join(screen_lines(body))
        assert "as last seen" in ended and job["job_id"] in ended and "stream     yes" in ended
        await settle(pilot)
        assert "Cancel job" not in footer_keys(app)
    thread.join(10)


async def test_drain_from_the_worker_detail_screen(gateway):
    from gatewaytui.tui.screens.confirm import ConfirmScreen
    from gatewaytui.tui.screens.worker_detail import WorkerDetailScreen

    RawWorker(gateway.ws_url, "a", ["m"])
    RawWorker(gateway.ws_url, "b", ["m"])
    app = live_app(gateway.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: table(app).total_count == 2, what="workers")
        await until(pilot, lambda: app._role is not None, what="role")
        table(app).move_cursor_to("b")
        await pilot.press("space")  # a mark on the table behind must not widen the drain
        table(app).move_cursor_to("a")
        await pilot.press("enter")
        assert isinstance(app.screen, WorkerDetailScreen) and app.screen.worker_id == "a"
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.title_text == "Drain 1 worker?" and "a" in str(app.screen.body)
        await pilot.press("y")
        await until(pilot, lambda: app.store.workers["a"]["status"] == "draining", what="drain")
        assert isinstance(app.screen, WorkerDetailScreen)
        body = app.screen.query_one("#detail-body")
        await until(pilot, lambda: "drained" in "\n".join(screen_lines(body)), what="shown")
        assert app.store.workers["b"]["status"] != "draining"


async def test_enter_on_an_event_shows_its_whole_message():
    from gatewaytui.tui.screens.event_detail import EventDetailScreen

    app = offline_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await settle(pilot)
        longest = max(app.store.events, key=lambda e: len(e.get("message", "")))
        await until(pilot, lambda: table(app).move_cursor_to(str(longest["id"])), what="cursor")
        await pilot.press("enter")
        assert isinstance(app.screen, EventDetailScreen)
        await settle(pilot)
        body = "".join(screen_lines(app.screen.query_one("#event-body"))).replace(" ", "")
        assert longest["message"].replace(" ", "") in body  # all of it, wrapped, not cut
        await pilot.press("escape")
        assert not isinstance(app.screen, EventDetailScreen)


async def test_the_worker_detail_sparkline_draws_the_workers_views_token_history():
    """The detail screen gets the history from the workers view that opened it (not from
    the app); samples taken while it is open show at its next tick."""
    from collections import deque

    from textual.widgets import Sparkline

    from gatewaytui.tui.screens.worker_detail import WorkerDetailScreen
    from gatewaytui.tui.views.workers import WorkersView

    app = offline_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        worker_id = table(app).cursor_id
        assert worker_id is not None
        rates = app.query_one(WorkersView).rates
        rates.history[worker_id] = deque([1.0, 5.0, 3.0])
        rates.history["someone-else"] = deque([99.0])
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, WorkerDetailScreen) and screen.worker_id == worker_id
        await pilot.pause()
        spark = screen.query_one("#detail-spark", Sparkline)
        assert list(spark.data or ()) == [1.0, 5.0, 3.0]
        rates.history[worker_id].append(7.0)
        screen.tick()
        assert list(spark.data or ()) == [1.0, 5.0, 3.0, 7.0]
