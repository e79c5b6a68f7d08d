"""One ended job from the ledger: how it ended (outcome, status, error) and its timings."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from gatewaytui.tui.bindings import DETAILS_BACK
from gatewaytui.tui.formatting import millis
from gatewaytui.tui.widgets.footer import GatewayFooter

OK_STYLES = {"ok": "bold green"}


def _when(ts: Any) -> str:
    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(ts)))


def ended_sentence(job: Mapping[str, Any]) -> Text:
    """`ended ok after 412ms` / `ended upstream_error (HTTP 502) after 3.0s` (as the list)."""
    outcome = str(job.get("outcome") or "?")
    status = job.get("status")
    code = f" (HTTP {status})" if status and outcome != "ok" else ""
    took = job.get("duration_ms")
    after = f" after {millis(took)}" if took is not None else ""
    return Text(f"ended {outcome}{code}{after}", OK_STYLES.get(outcome, "bold red"))


def describe_ended_job(job: Mapping[str, Any]) -> Group:
    """The detail body; every wire string goes in as Text, never as markup."""
    facts = Table.grid(padding=(0, 2))
    rows = (
        ("job", job.get("id")),
        ("kind", f"{job.get('kind')}{' (stream)' if job.get('stream') else ''}"),
        ("model", job.get("model")),
        ("api key", job.get("key")),
        ("client", job.get("client")),
        ("worker", job.get("worker")),
        ("backend", job.get("backend")),
        ("replica", job.get("replica")),
        ("requested", _when(job.get("requested_at"))),
        ("started", _when(job.get("started_at"))),
        ("ended", _when(job.get("ended_at"))),
        ("queue wait", millis(job.get("queue_ms"))),
        ("first token", millis(job.get("ttft_ms"))),
        ("duration", millis(job.get("duration_ms"))),
        ("tokens in/out", f"{job.get('tokens_in') or '-'} / {job.get('tokens_out', 0)}"),
        ("embeddings", str(job.get("embeddings") or 0)),
        ("attempts", str(job.get("attempts") or 1)),
    )
    for key, value in rows:
        if value is None:
            continue
        facts.add_row(Text(key, "bold"), Text(str(value)))
    parts: list[Any] = [ended_sentence(job), Text(), facts]
    if job.get("error"):
        parts += [Text(), Text("error", "bold"), Text(str(job["error"]))]
    return Group(*parts)


class HistoryJobScreen(ModalScreen[None]):
    """Opened with enter on the History view; an ended job never changes."""

    CSS_PATH = "event_detail.tcss"  # the same panel-over-a-view look as an event's details

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", "Back", id="history_detail.back", tooltip=DETAILS_BACK),
    ]

    def __init__(self, job: Mapping[str, Any]) -> None:
        super().__init__()
        self.job = dict(job)

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(describe_ended_job(self.job), id="event-body")
        yield GatewayFooter()

    def action_close(self) -> None:
        self.dismiss(None)
