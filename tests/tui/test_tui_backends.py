"""The Backends view and its form, driven as an operator would: a real gateway on a loopback
port, a real OpenAI-compatible upstream, the panel reaching the gateway only through the
client layer."""

from __future__ import annotations

import httpx
import pytest
from textual.widgets import Input, Static, Switch, TextArea

from gatewaytui.schema import BackendStatus
from gatewaytui.tui.app import GatewayApp
from gatewaytui.tui.config import TuiConfig
from gatewaytui.tui.screens.backend_detail import BackendDetailScreen
from gatewaytui.tui.screens.backend_form import (
    BackendFormScreen,
    FormError,
    describe_changes,
    format_labels,
    format_models,
    parse_labels,
    parse_lines,
    parse_models,
)
from gatewaytui.tui.screens.confirm import ConfirmScreen
from support.backend_upstream import upstreams
from support.panel import live_app, table
from support.paths import SAMPLE
from support.waiting import until

KEY = "sk-panel-9b1c2d3e4f5a-SECRET"


@pytest.fixture
def upstream():
    yield from upstreams()


@pytest.fixture
def gw(make_gateway, tmp_path):
    return make_gateway(
        backends__store_path=str(tmp_path / "backends.yaml"), backends__probe_interval="1h"
    )


def screen_text(app: GatewayApp) -> str:
    """Everything drawn on the terminal right now (the SVG export holds every glyph)."""
    return app.export_screenshot()


def error_of(form: BackendFormScreen, field: str) -> str:
    widget = form.query_one(f"#err-{field}", Static)
    return str(widget.render()) if widget.has_class("-shown") else ""


def status_of(form: BackendFormScreen) -> str:
    return str(form.query_one("#form-status", Static).render())


async def type_into(pilot, form: BackendFormScreen, field: str, text: str) -> None:
    """Fill an input (as typing would: one Changed event, live validation) and settle."""
    widget = form.query_one(f"#{field}")
    widget.focus()
    if isinstance(widget, TextArea):
        widget.text = text
    else:
        assert isinstance(widget, Input)
        widget.value = text
    await pilot.pause()


async def open_view(pilot, app: GatewayApp, rows: int) -> None:
    await pilot.press("6")
    await until(pilot, lambda: app.session.state.live, what="live")
    await until(pilot, lambda: app._role is not None, what="role")
    await until(pilot, lambda: table(app).total_count == rows, what=f"{rows} backend rows")


def test_model_lines_round_trip() -> None:
    text = "llama3:8b chat,stream,think ctx=8192 max_out=4096\nbge-m3 embed dim=1024 tm=1.5"
    models = parse_models(text)
    assert models == [
        {
            "name": "llama3:8b",
            "capabilities": ["chat", "stream", "think"],
            "context_length": 8192,
            "max_output_tokens": 4096,
        },
        {"name": "bge-m3", "capabilities": ["embed"], "embedding_dimension": 1024,
         "token_modifier": 1.5},
    ]  # fmt: skip
    assert parse_models(format_models(models)) == models
    changes = describe_changes(
        {"url": "http://a/v1", "timeout_s": 60.0, "labels": {}, "api_key_set": True},
        {"url": "http://b/v1", "timeout_s": 120.0, "labels": {"k": "v"}, "api_key_set": False},
    )
    assert changes == [
        "url: http://a/v1 → http://b/v1",
        "timeout_s: 1m → 2m",
        "labels: (none) → k=v",
        "the key was changed",
    ]


async def test_add_validates_tests_the_connection_and_saves(gw, upstream):
    up = upstream(key=KEY, models=["llama3.1:8b", "qwen2.5:7b"])
    app = live_app(gw.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_view(pilot, app, 0)
        await pilot.press("a")
        form = app.screen
        assert isinstance(form, BackendFormScreen) and not form.editing
        await type_into(pilot, form, "id", "gpu-box")
        await type_into(pilot, form, "url", "ftp://10.0.0.5")
        assert "http://" in error_of(form, "url")  # as you type, with the gateway's model
        assert error_of(form, "labels") == ""  # untouched fields stay quiet
        await type_into(pilot, form, "url", up.root)
        assert error_of(form, "url") == ""
        form.query_one("#api_key", Input).focus()
        await pilot.press(*KEY)  # typed for real: the key never shows on screen
        assert KEY not in screen_text(app)
        await type_into(pilot, form, "labels", "rack-r1")
        assert "key=value" in error_of(form, "labels")
        await type_into(pilot, form, "labels", "rack=r1")

        await pilot.press("ctrl+t")
        await until(pilot, lambda: "connected" in status_of(form), what="test connection")
        assert "llama3.1:8b" in status_of(form) and "2 models" in status_of(form)
        assert gw.sync(lambda: "gpu-box" not in gw.gateway.backends.records)  # not saved

        await pilot.press("ctrl+s")
        await until(pilot, lambda: not isinstance(app.screen, BackendFormScreen), what="saved")
        await until(pilot, lambda: table(app).total_count == 1, what="row")
        assert table(app).cursor_id == "gpu-box"
        record = gw.sync(lambda: gw.gateway.backends.records["gpu-box"].to_dict())
        assert record["api_key_set"] and record["labels"] == {"rack": "r1"}
        assert record["url"] == up.url
        assert KEY not in screen_text(app)


async def test_a_spec_made_by_the_api_survives_an_unchanged_save_from_the_form(gw):
    """Regexes with spaces and label values with spaces (or `=`) round-trip exactly."""
    spec = {
        "id": "rt",
        "url": "http://10.0.0.9:8000/v1",
        "include_models": ["^llama 3", "qwen"],
        "exclude_models": ["-instruct$", "embed v2"],
        "labels": {"owner": "team a", "note": "x=y z", "rack": "r1"},
    }
    assert httpx.post(gw.url + "/api/backends", json=spec).status_code == 201
    app = live_app(gw.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_view(pilot, app, 1)
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, BackendFormScreen), what="form")
        form = app.screen
        assert form.query_one("#include_models", TextArea).text == "^llama 3\nqwen"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: not isinstance(app.screen, BackendFormScreen), what="saved")
        saved = gw.sync(lambda: gw.gateway.backends.records["rt"])
        assert saved.revision == 1  # nothing changed: no new revision
        assert saved.spec.include_models == ["^llama 3", "qwen"]
        assert saved.spec.exclude_models == ["-instruct$", "embed v2"]
        assert saved.spec.labels == {"owner": "team a", "note": "x=y z", "rack": "r1"}
        assert saved.spec.admits("llama 3.1") and not saved.spec.admits("llama3")


def test_label_and_pattern_lines() -> None:
    assert parse_labels("a=b c\n\n k = v=w \n") == {"a": "b c", "k": "v=w"}
    assert parse_labels(format_labels({"x": "1 2", "y": ""})) == {"x": "1 2", "y": ""}
    with pytest.raises(FormError, match="line 2: expected key=value"):
        parse_labels("a=1\nrack r1")
    assert parse_lines("^llama 3\n\n  qwen  \n") == ["^llama 3", "qwen"]


async def test_the_gateways_own_messages_are_shown_next_to_the_fields(gw):
    httpx.post(gw.url + "/api/backends", json={"id": "taken", "url": "http://h:1"})
    app = live_app(gw.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_view(pilot, app, 1)
        await pilot.press("a")
        form = app.screen
        assert isinstance(form, BackendFormScreen)
        await type_into(pilot, form, "id", "taken")
        await type_into(pilot, form, "url", "http://h:2")
        await pilot.press("ctrl+s")  # valid here; the gateway refuses the duplicate id
        await until(pilot, lambda: error_of(form, "id") != "", what="id error")
        assert "exists" in error_of(form, "id")
        assert isinstance(app.screen, BackendFormScreen)  # still open, nothing lost
        assert form.query_one("#url", Input).value == "http://h:2"

        # A body the gateway finds wrong field by field (a model line too).
        body = form.spec_body() | {
            "id": "fresh",
            "timeout_s": -1,
            "declared_models": [{"name": "m"}, {"name": "n", "max_output_tokens": -5}],
        }
        form._save(body)
        await until(pilot, lambda: error_of(form, "timeout_s") != "", what="server 422")
        assert "greater than 0" in error_of(form, "timeout_s")
        assert error_of(form, "declared_models").startswith("↑ model 2: max_output_tokens")
        assert "refused" in status_of(form)
        assert gw.sync(lambda: set(gw.gateway.backends.records)) == {"taken"}


async def test_edit_keeps_the_key_unless_a_new_one_is_typed(gw, upstream):
    up = upstream(key=KEY)
    httpx.post(gw.url + "/api/backends", json={"id": "up", "url": up.url, "api_key": KEY})
    app = live_app(gw.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_view(pilot, app, 1)
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, BackendFormScreen), what="form")
        form = app.screen
        key = form.query_one("#api_key", Input)
        assert key.value == "" and key.placeholder.startswith("set")
        assert form.query_one("#id", Input).disabled  # the id is the backend's name
        assert KEY not in screen_text(app)
        await type_into(pilot, form, "max_concurrency", "3")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: not isinstance(app.screen, BackendFormScreen), what="saved")
        saved = gw.sync(lambda: gw.gateway.backends.records["up"])
        assert (saved.revision, saved.spec.max_concurrency) == (2, 3)
        assert saved.spec.api_key.get_secret_value() == KEY  # kept
        probe = httpx.post(gw.url + "/api/backends/up/probe").json()
        assert probe["ok"] and up.requests[-1]["auth"] == f"Bearer {KEY}"

        await pilot.press("enter")  # enter describes, read-only; e there edits
        await until(pilot, lambda: isinstance(app.screen, BackendDetailScreen), what="describe")
        assert KEY not in screen_text(app)
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, BackendFormScreen), what="form")
        form = app.screen
        await type_into(pilot, form, "api_key", "sk-replacement-key-42")
        assert "sk-replacement-key-42" not in screen_text(app)  # typed keys are masked
        form.query_one("#remove_key", Switch).value = True  # a typed key wins over remove
        await pilot.press("ctrl+s")
        await until(pilot, lambda: not isinstance(app.screen, BackendFormScreen), what="saved")
        saved = gw.sync(lambda: gw.gateway.backends.records["up"])
        assert saved.spec.api_key.get_secret_value() == "sk-replacement-key-42"


async def test_a_conflict_shows_what_changed_and_offers_to_reload(gw):
    httpx.post(gw.url + "/api/backends", json={"id": "b", "url": "http://10.0.0.1:8000/v1"})
    app = live_app(gw.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_view(pilot, app, 1)
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, BackendFormScreen), what="form")
        form = app.screen
        await type_into(pilot, form, "max_concurrency", "2")
        colleague = httpx.patch(
            gw.url + "/api/backends/b",
            json={"url": "http://10.0.0.2:8000/v1", "labels": {"owner": "bob"}},
        )
        assert colleague.json()["revision"] == 2
        await pilot.press("ctrl+s")
        conflict = form.query_one("#conflict")
        await until(pilot, lambda: conflict.has_class("-shown"), what="conflict panel")
        text = str(form.query_one("#conflict-text", Static).render())
        assert "revision 1 → 2" in text
        assert "url: http://10.0.0.1:8000/v1 → http://10.0.0.2:8000/v1" in text
        assert "labels: (none) → owner=bob" in text
        assert gw.sync(lambda: gw.gateway.backends.records["b"].spec.max_concurrency) == 8

        await pilot.click("#reload")
        assert not conflict.has_class("-shown")
        assert form.query_one("#url", Input).value == "http://10.0.0.2:8000/v1"
        assert form.query_one("#labels", TextArea).text == "owner=bob"
        assert form.query_one("#max_concurrency", Input).value == "8"  # theirs
        await type_into(pilot, form, "max_concurrency", "2")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: not isinstance(app.screen, BackendFormScreen), what="saved")
        saved = gw.sync(lambda: gw.gateway.backends.records["b"])
        assert saved.revision == 3 and saved.spec.max_concurrency == 2
        assert saved.spec.labels == {"owner": "bob"}  # their edit survived


async def test_reload_theirs_refreshes_the_key_hint_and_the_remove_switch(gw):
    httpx.post(gw.url + "/api/backends", json={"id": "b", "url": "http://10.0.0.1:8000/v1"})
    app = live_app(gw.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_view(pilot, app, 1)
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, BackendFormScreen), what="form")
        form = app.screen
        key, remove = form.query_one("#api_key", Input), form.query_one("#remove_key", Switch)
        assert key.placeholder.startswith("none") and not remove.display  # no key: no switch
        httpx.patch(
            gw.url + "/api/backends/b", json={"api_key": "env:GATEWAYTUI_BACKEND_TEAM_KEY"}
        )  # colleague
        await type_into(pilot, form, "max_concurrency", "2")
        await pilot.press("ctrl+s")
        conflict = form.query_one("#conflict")
        await until(pilot, lambda: conflict.has_class("-shown"), what="conflict panel")
        assert "the key was changed" in str(form.query_one("#conflict-text", Static).render())
        await pilot.click("#reload")
        assert (
            key.placeholder.startswith("set (env:GATEWAYTUI_BACKEND_TEAM_KEY)") and remove.display
        )
        remove.value = True  # now the stored key can be removed from this form
        # The switch's Changed message marks the field touched; a save before it would not
        # carry the removal (and would rebase over a conflict on untouched fields at once).
        await until(pilot, lambda: "api_key" in form.fields.touched, what="the switch noted")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: not isinstance(app.screen, BackendFormScreen), what="saved")
        saved = gw.sync(lambda: gw.gateway.backends.records["b"])
        assert saved.revision == 3 and saved.spec.api_key is None

        # And back: their version drops the key, so the switch goes away on reload.
        httpx.patch(gw.url + "/api/backends/b", json={"api_key": "sk-new-one"})  # revision 4
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, BackendFormScreen), what="form")
        form = app.screen
        remove = form.query_one("#remove_key", Switch)
        assert remove.display
        remove.value = True
        await until(pilot, lambda: "api_key" in form.fields.touched, what="the switch noted")
        httpx.patch(gw.url + "/api/backends/b", json={"api_key": ""})  # revision 5: removed
        await pilot.press("ctrl+s")
        conflict = form.query_one("#conflict")
        await until(pilot, lambda: conflict.has_class("-shown"), what="second conflict")
        await pilot.click("#reload")
        assert form.query_one("#api_key", Input).placeholder.startswith("none")
        assert not remove.display and remove.value is False
        assert "api_key" not in form.spec_body()


async def test_probe_enable_disable_and_delete_from_the_view(gw, upstream):
    up = upstream(models=["m1"])
    httpx.post(gw.url + "/api/backends", json={"id": "up", "url": up.url})
    gw.wait_for(lambda g: g.backends.records["up"].status is BackendStatus.HEALTHY)
    app = live_app(gw.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_view(pilot, app, 1)
        probes = len(up.bodies("/v1/models"))
        await pilot.press("P")
        await until(
            pilot,
            lambda: any("✓ up: 1 model in" in n.message for n in app._notifications),
            what="probe notice",
        )
        assert len(up.bodies("/v1/models")) == probes + 1

        await pilot.press("t")
        await until(pilot, lambda: app.store.items["backends"]["up"]["enabled"] is False)
        # The stream may show the change before the PATCH's answer brings the notice.
        await until(pilot, lambda: "backend up disabled" in notices(app), what="notice")
        await pilot.press("t")
        await until(pilot, lambda: app.store.items["backends"]["up"]["enabled"] is True)

        await pilot.press("delete")
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.focused.id == "cancel"  # the default is Cancel
        await pilot.press("n")
        assert gw.sync(lambda: "up" in gw.gateway.backends.records)
        await pilot.press("delete", "y")
        await until(pilot, lambda: table(app).total_count == 0, what="row removed")
        assert gw.sync(lambda: "up" not in gw.gateway.backends.records)


def hold_the_stream(gw) -> None:
    """From now on the gateway's state stream sends nothing (its ticker ticks idle): the
    panel's rows stay at what it last saw, as they do for up to a flush in real life."""
    gw.sync(lambda: setattr(gw.gateway.hub, "tick", lambda: None))


def notices(app: GatewayApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def test_toggling_twice_quickly_builds_on_our_own_last_edit(gw):
    httpx.post(gw.url + "/api/backends", json={"id": "b", "url": "http://10.0.0.1:8000/v1"})
    app = live_app(gw.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_view(pilot, app, 1)
        await until(pilot, lambda: app.store.items["backends"]["b"].get("last_probe_at"))
        hold_the_stream(gw)
        await pilot.press("t", "t")  # the stream still says revision 1, enabled
        record = lambda: gw.sync(lambda: gw.gateway.backends.records["b"])  # noqa: E731
        await until(pilot, lambda: record().revision == 3, what="two edits")
        assert record().spec.enabled is True  # disabled, then enabled again
        await until(pilot, lambda: "backend b enabled" in notices(app), what="second notice")
        assert "backend b disabled" in notices(app)
        assert not any("changed" in n or "refused" in n for n in notices(app))
        assert app.store.items["backends"]["b"]["revision"] == 1  # the stream did lag


async def test_a_real_conflict_shows_what_changed_and_retries_on_their_version(gw):
    httpx.post(gw.url + "/api/backends", json={"id": "b", "url": "http://10.0.0.1:8000/v1"})
    app = live_app(gw.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_view(pilot, app, 1)
        await until(pilot, lambda: app.store.items["backends"]["b"].get("last_probe_at"))
        hold_the_stream(gw)
        colleague = httpx.patch(
            gw.url + "/api/backends/b", json={"labels": {"owner": "bob [/x]"}, "revision": 1}
        )
        assert colleague.json()["revision"] == 2
        await pilot.press("t")  # we saw revision 1
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="conflict")
        text = app.screen.body.plain
        assert "revision 1 → 2" in text and "labels: (none) → owner=bob [/x]" in text
        assert gw.sync(lambda: gw.gateway.backends.records["b"].spec.enabled) is True
        await pilot.press("y")  # disable it anyway, on their version
        record = lambda: gw.sync(lambda: gw.gateway.backends.records["b"])  # noqa: E731
        await until(pilot, lambda: record().revision == 3, what="retried")
        assert record().spec.enabled is False and record().spec.labels == {"owner": "bob [/x]"}

        httpx.patch(gw.url + "/api/backends/b", json={"max_concurrency": 3})  # revision 4
        await pilot.press("delete", "y")  # confirmed on revision 3 (our own last edit)
        await until(pilot, lambda: "changed meanwhile" in getattr(app.screen, "title_text", ""))
        assert "max_concurrency: 8 → 3" in app.screen.body.plain
        await pilot.press("n")
        assert gw.sync(lambda: "b" in gw.gateway.backends.records)
        assert "delete b: left as it is" in notices(app)


async def test_notices_never_read_upstream_text_as_markup(gw):
    """An upstream's error text with `[/x]` (a closing tag Rich would choke on) is shown as is."""
    import http.server
    import json
    import threading

    class Broken(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"error": {"message": "bad [/x] [bold]thing"}}).encode()
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Broken)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        httpx.post(gw.url + "/api/backends", json={"id": "up", "url": url})
        app = live_app(gw.url)
        async with app.run_test(size=(160, 40), notifications=True) as pilot:
            await open_view(pilot, app, 1)
            await pilot.press("P")
            await until(pilot, lambda: any("✖ up" in n for n in notices(app)), what="probe failure")
            await pilot.pause()
            failure = next(n for n in app._notifications if "✖ up" in str(n.message))
            assert not failure.markup and "bad [/x] [bold]thing" in failure.message
            from textual.widgets._toast import Toast, ToastRack

            rack = app.screen.get_child_by_type(ToastRack)
            await until(pilot, lambda: len(rack.query(Toast)) > 0, what="toast shown")
            toast = next(t for t in rack.query(Toast) if "✖ up" in str(t.render()))
            assert "bad [/x] [bold]thing" in str(toast.render())
    finally:
        server.shutdown()
        server.server_close()


async def test_read_only_hides_and_refuses_backend_edits():
    app = GatewayApp(TuiConfig(), snapshot=SAMPLE, read_only=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("6")
        assert table(app).total_count == 4
        view = app.current_view
        for action in ("add", "edit", "delete", "toggle_enabled", "probe"):
            assert view.check_action(action, ()) is False
        await pilot.press("a")
        await pilot.press("e")
        assert not isinstance(app.screen, BackendFormScreen)
