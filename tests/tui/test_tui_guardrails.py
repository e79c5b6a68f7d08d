"""Guardrails: a drain says what each model is left with and is typed out when it would
leave a model with nothing ready; a queued job's cancel dialog; 'already ended', not 404."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Button

from gatewaytui.client.errors import ActionError
from gatewaytui.tui.actions import cancel_job_dialog, worker_action_dialog
from gatewaytui.tui.guardrails import drain_impact, plural
from gatewaytui.tui.screens.confirm import ConfirmScreen
from gatewaytui.tui.screens.type_confirm import TypeToConfirmScreen
from support.panel import live_app, offline_app, table
from support.raw_worker import RawWorker
from support.waiting import until

WORKERS = {
    "a": {"id": "a", "status": "idle", "models": ["big"], "inflight": 1},
    "b": {"id": "b", "status": "working", "models": ["big", "small"], "inflight": 0},
    "c": {"id": "c", "status": "idle", "models": ["small"], "inflight": 0},
}
MODELS = {
    "big": {"id": "big", "workers": 2, "ready_workers": 2, "queued": 8},
    "small": {"id": "small", "workers": 2, "ready_workers": 2, "queued": 0},
}


def test_plurals_read_as_english():
    assert (plural(1, "job"), plural(0, "job"), plural(2, "worker")) == (
        "1 job",
        "0 jobs",
        "2 workers",
    )


def test_draining_the_last_ready_workers_of_a_model_is_typed_out():
    lines = [i.line() for i in drain_impact(["a", "b"], WORKERS, MODELS)]
    assert lines == [
        "big: 0 of 2 workers ready after this, 8 queued",
        "small: 1 of 2 workers ready after this, 0 queued",
    ]
    dialog = worker_action_dialog("drain", ["a", "b"], WORKERS, MODELS)
    assert isinstance(dialog, TypeToConfirmScreen)
    assert "big: 0 of 2 workers ready after this, 8 queued" in str(dialog.body)
    assert dialog.title_text == "Drain 2 workers?"


def test_a_drain_that_leaves_capacity_is_a_plain_confirmation():
    dialog = worker_action_dialog("drain", ["c"], WORKERS, MODELS)
    assert isinstance(dialog, ConfirmScreen) and dialog.title_text == "Drain 1 worker?"
    assert "small: 1 of 2 workers ready after this" in str(dialog.body)
    assert "1 job in flight" in str(worker_action_dialog("drain", ["a"], WORKERS, {}).body)


def test_a_model_with_nothing_ready_already_is_not_typed_out_again():
    gone = {**WORKERS, "a": {**WORKERS["a"], "status": "gone"}}
    models = {**MODELS, "big": {**MODELS["big"], "ready_workers": 0}}
    dialog = worker_action_dialog("drain", ["a"], gone, models)
    assert isinstance(dialog, ConfirmScreen)
    assert "big: 0 of 2 workers ready after this, 8 queued" in str(dialog.body)


def test_a_ready_backend_keeps_a_model_served():
    models = {**MODELS, "big": {**MODELS["big"], "ready_backends": 1}}
    dialog = worker_action_dialog("drain", ["a", "b"], WORKERS, models)
    assert isinstance(dialog, ConfirmScreen)
    assert "(+1 ready backend)" in str(dialog.body)


async def test_a_queued_jobs_cancel_dialog_says_how_long_and_keep():
    app = offline_app()
    async with app.run_test(size=(120, 40)) as pilot:
        job = {"id": "chat-q", "kind": "chat", "model": "big", "state": "queued",
               "started_at": "2026-11-21T09:29:34.000Z"}  # fmt: skip
        dialog = cancel_job_dialog(job, app.now())
        await app.push_screen(dialog)
        await pilot.pause()
        text = Text(str(dialog.body)).plain
        assert "queued 26s" in text and "never runs" in text
        labels = [str(b.label) for b in dialog.query(Button)]
        assert labels == ["Keep (n)", "Cancel job (y)"]


async def test_cancelling_a_job_that_already_ended_says_so(gateway, monkeypatch):
    RawWorker(gateway.ws_url, "w", ["m"])
    app = live_app(gateway.url)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: table(app).total_count == 1, what="worker")

        async def ended(job_id: str):
            raise ActionError(404, f"no job with id {job_id!r}", code="not_found")

        notes: list[str] = []
        monkeypatch.setattr(app.session, "cancel_job", ended)
        monkeypatch.setattr(app, "notify", lambda message, **_: notes.append(str(message)))
        await app.actions._run_cancel("chat-gone")
        assert "job chat-gone already ended: nothing to cancel" in notes
        assert not any("404" in n for n in notes)


async def test_a_refused_key_in_read_only_mode_says_why_in_one_line(monkeypatch):
    app = offline_app()
    async with app.run_test(size=(120, 40)) as pilot:
        notes: list[str] = []
        monkeypatch.setattr(app, "notify", lambda message, **_: notes.append(str(message)))
        await pilot.press("2")
        await pilot.press("d")
        await pilot.pause()
        assert notes == ["read-only: offline snapshot"]
        await pilot.press("j")  # not an action key: nothing said
        assert notes == ["read-only: offline snapshot"]


def test_a_refused_token_reads_http_401_once():
    from gatewaytui.client.connection import ConnectionState, ConnectionStatus
    from gatewaytui.tui.widgets.banner import BannerState

    state = ConnectionState(
        ConnectionStatus.UNAUTHORIZED, since=0.0, last_error="HTTP 401: bad token", http_status=401
    )
    text, _ = BannerState(state, "prod", "http://gw").message()
    assert text is not None and "(HTTP 401: bad token)" in text.plain
    assert "HTTP 401: HTTP 401" not in text.plain
    bare = ConnectionState(
        ConnectionStatus.UNAUTHORIZED, since=0.0, last_error="bad token", http_status=403
    )
    text, _ = BannerState(bare, "prod", "http://gw").message()
    assert text is not None and "(HTTP 403: bad token)" in text.plain
