"""One backend described, read-only (`kubectl describe` habit): what `enter` opens on Backends.

Its status and routing, the last error in full (the table's NOTE column cuts it), failures,
requests, latency, when it is retried, its models, and its settings; live while open. The
key is never shown, only whether one is set and from which variable. Editing stays on `e`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.css.query import NoMatches
from textual.screen import ModalScreen
from textual.widgets import Static

from gatewaytui.shared.text import plural
from gatewaytui.tui.bindings import DETAILS_BACK
from gatewaytui.tui.context import panel_of
from gatewaytui.tui.formatting import age, ms, parse_ts, status_text
from gatewaytui.tui.widgets.footer import GatewayFooter


def _when(value: str | None, now: float, future: bool = False) -> str:
    """`12s ago (09:29:45Z)` / `in 40s (09:30:31Z)` / `never`."""
    at = parse_ts(value)
    if at is None:
        return "-" if future else "never"
    clock = str(value)[11:19]
    if future:
        return f"in {age(at - now)} ({clock})" if at > now else f"now ({clock})"
    return f"{age(now - at)} ago ({clock})"


def _routing(backend: Mapping[str, Any], now: float) -> Text:
    if not backend.get("enabled", True):
        return Text("disabled: not routed", "bold")
    if backend.get("routing", True):
        return Text("in routing")
    retry = _when(backend.get("next_retry_at"), now, future=True)
    return Text(f"out of routing, next retry {retry}", "bold red")


def _key(backend: Mapping[str, Any]) -> str:
    if not backend.get("api_key_set"):
        return "none"
    env = backend.get("api_key_env")
    return f"set (from env {env})" if env else "set"


def describe_backend(
    backend: Mapping[str, Any], now: float, styles: dict[str, str] | None = None
) -> Group:
    """The describe body; every wire string goes in as Text, never as markup."""
    requests, failures = int(backend.get("requests", 0)), int(backend.get("failures", 0))
    share = f" ({failures / requests:.1%} of requests)" if requests else ""
    probes = int(backend.get("consecutive_failures", 0))
    labels = " ".join(f"{k}={v}" for k, v in sorted((backend.get("labels") or {}).items()))
    settings = (
        f"timeout {backend.get('timeout_s', '-')}s  batch {backend.get('batch_size', '-')}  "
        f"key {_key(backend)}"
    )
    facts = Table.grid(padding=(0, 2))
    rows: list[tuple[str, RenderableType]] = [
        ("backend", Text.assemble((str(backend["id"]), "bold"), f"  {backend.get('type', '')}")),
        ("url", Text(str(backend.get("url") or "-"))),
        ("status", status_text(backend.get("status"), styles)),
        ("routing", _routing(backend, now)),
        ("latency", Text(ms(backend["latency_ms"]) if backend.get("latency_ms") else "-")),
        ("probed", Text(_when(backend.get("last_probe_at"), now))),
        ("last ok", Text(_when(backend.get("last_ok_at"), now))),
        ("probes", Text(f"{plural(probes, 'failed probe')} in a row" if probes else "ok")),
        ("load", Text(f"{backend.get('inflight', 0)}/{backend.get('max_concurrency', 0)} calls")),
        ("requests", Text(f"{requests}  failures {failures}{share}")),
        (
            "tokens",
            Text(
                f"{backend.get('tokens_in', 0)} in / {backend.get('tokens_out', 0)} out  "
                f"embeddings {backend.get('embeddings', 0)}"
            ),
        ),
        ("models", Text("\n".join(backend.get("models") or []) or "-")),
        ("settings", Text(settings)),
        ("labels", Text(labels or "-")),
    ]
    for key, value in rows:
        facts.add_row(Text(key, "bold"), value)
    error = backend.get("last_error")
    last = Text("last error", "bold")
    body = Text(str(error), "yellow") if error else Text("none", "dim")
    return Group(facts, Text(), last, body)


class BackendDetailScreen(ModalScreen[None]):
    """Read-only and live; `e` hands over to the edit form (where editing is allowed)."""

    CSS_PATH = "backend_detail.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", "Back", id="backend_detail.back", tooltip=DETAILS_BACK),
        Binding("e", "edit", "Edit", id="backend_detail.edit"),
    ]

    def __init__(self, backend_id: str, edit: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.backend_id = backend_id
        self._edit = edit

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(id="backend-body")
        yield GatewayFooter()

    def on_mount(self) -> None:
        self._show()

    def show_state(self, store: Any, change: Any) -> None:
        self._show()

    def tick(self) -> None:
        self._show()  # the ages (probed, next retry)

    def _show(self) -> None:
        panel = panel_of(self)
        backend = panel.store.backends.get(self.backend_id)
        try:
            body = self.query_one("#backend-body", Static)
        except NoMatches:  # an update between push and compose, or after dismiss
            return
        if backend is None:
            body.update(Text(f"backend {self.backend_id} is gone (deleted)", "bold"))
            return
        body.update(describe_backend(backend, panel.now(), panel.status_styles))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "edit":
            return self._edit is not None and not panel_of(self).read_only
        return True

    def action_edit(self) -> None:
        if self._edit is not None:
            self.dismiss(None)
            self._edit(self.backend_id)

    def action_close(self) -> None:
        self.dismiss(None)
