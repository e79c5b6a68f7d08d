"""Drain or re-add every worker matching a label selector (`gpu=H100`, `zone in (a,b)`).

The prompt shows, as the selector is typed and as the state moves, which workers match and
(for a drain) what each model is left with; `enter` hands the matching workers to the usual
confirmation dialog (`PanelActions.request_worker_action`), which names them again and types
out a drain that strands a model. A bad selector says what and where, in one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from gatewaytui.client.rows import WorkerRow
from gatewaytui.shared.selector import Selector, SelectorError, parse_selector
from gatewaytui.shared.text import plural
from gatewaytui.tui.context import panel_of
from gatewaytui.tui.guardrails import drain_impact
from gatewaytui.tui.widgets.footer import GatewayFooter

Kind = Literal["drain", "undrain"]
PLACEHOLDER = "gpu=H100, zone in (a,b), pool!=batch, !spot"
SHOWN = 8  # matching workers listed by name; the rest are counted


def select_workers(
    kind: Kind, selector: Selector, workers: Mapping[str, WorkerRow]
) -> tuple[list[str], list[str]]:
    """(the workers to act on, the matching ones left out): a drain skips workers that are
    gone or draining already, a re-add takes only draining ones."""
    chosen: list[str] = []
    skipped: list[str] = []
    for worker_id in sorted(workers):
        worker = workers[worker_id]
        if not selector.matches(worker.get("labels")):
            continue
        gone = worker.get("status") == "gone"
        draining = bool(worker.get("draining"))
        wanted = not gone and (not draining if kind == "drain" else draining)
        (chosen if wanted else skipped).append(worker_id)
    return chosen, skipped


def _verb(count: int) -> str:
    return "matches" if count == 1 else "match"


def _labels(worker: WorkerRow) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted((worker.get("labels") or {}).items()))


def known_labels(workers: Mapping[str, WorkerRow], most: int = 12) -> str:
    """`labels here: gpu=A100 (2), gpu=H100 (1), …` (values are case-sensitive)."""
    counts: dict[str, int] = {}
    for worker in workers.values():
        if worker.get("status") != "gone":
            for key, value in (worker.get("labels") or {}).items():
                counts[f"{key}={value}"] = counts.get(f"{key}={value}", 0) + 1
    if not counts:
        return "no worker has labels (workers set them with --label k=v)"
    shown = [f"{label} ({n})" for label, n in sorted(counts.items())[:most]]
    more = ", …" if len(counts) > most else ""
    return "labels here (case-sensitive): " + ", ".join(shown) + more


def preview(
    kind: Kind,
    selector: Selector,
    workers: Mapping[str, WorkerRow],
    models: Mapping[str, Mapping[str, Any]],
) -> Text:
    """The matching workers and, for a drain, what each model is left with."""
    chosen, skipped = select_workers(kind, selector, workers)
    text = Text()
    if not chosen:
        text.append(f"no worker to {'drain' if kind == 'drain' else 're-add'} matches ", "bold")
        text.append(str(selector), "bold")
        text.append(f"\n{known_labels(workers)}", "dim")
    else:
        text.append(f"{plural(len(chosen), 'worker')} {_verb(len(chosen))} ", "bold")
        text.append(str(selector), "bold")
        text.append(":\n")
    for worker_id in chosen[:SHOWN]:
        worker = workers[worker_id]
        text.append("  • ")
        text.append(worker_id, "bold")
        text.append(f"  {worker.get('status', '?')}, {plural(worker.get('inflight', 0), 'job')}")
        text.append(f"  {_labels(worker)}\n", "dim")
    if len(chosen) > SHOWN:
        text.append(f"  … and {len(chosen) - SHOWN} more\n")
    if kind == "drain" and chosen:
        text.append("\n")
        for impact in drain_impact(chosen, workers, models):
            text.append(f"  {impact.line()}\n", "bold red" if impact.left_without else "")
    if skipped:
        why = "gone or draining already" if kind == "drain" else "not draining"
        be = "is" if len(skipped) == 1 else "are"
        text.append(
            f"\n{plural(len(skipped), 'more worker')} {_verb(len(skipped))} but {be} {why}: "
            "left out\n",
            "dim",
        )
    return text


class LabelSelectScreen(ModalScreen[list[str] | None]):
    """Type a selector; `enter` returns the matching workers (None: cancelled)."""

    CSS_PATH = "label_select.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="label_select.cancel"),
    ]

    def __init__(self, kind: Kind, initial: str = "") -> None:
        super().__init__()
        self.kind = kind
        self.initial = initial
        self.selector: Selector | None = None
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        verb = "Drain" if self.kind == "drain" else "Re-add"
        with Vertical():
            yield Static(Text(f"{verb} workers by label"), classes="title")
            yield Input(self.initial, placeholder=PLACEHOLDER, id="selector")
            yield Static(
                "=, !=, in (a,b), notin (a,b), key, !key; comma = and · "
                "enter reviews and confirms · esc cancels",
                classes="hint",
            )
            yield Static(id="label-preview")
        yield GatewayFooter()

    def on_mount(self) -> None:
        self.query_one(Input).focus()
        self._update(self.initial)

    def on_input_changed(self, event: Input.Changed) -> None:
        self._update(event.value)

    def show_state(self, store: Any, change: Any) -> None:
        """Live: the matches and the models' counts follow the state while the prompt is open."""
        self._show()

    def _update(self, value: str) -> None:
        self.selector, self.error = None, None
        if value.strip():
            try:
                self.selector = parse_selector(value)
            except SelectorError as exc:
                self.error = str(exc)
        self._show()

    def _show(self) -> None:
        body = self.query_one("#label-preview", Static)
        if self.error is not None:
            body.update(Text(f"bad selector: {self.error}", "bold red"))
        elif self.selector is None:
            workers = panel_of(self).store.workers
            body.update(
                Text(
                    f"type a selector, e.g. gpu=H100 or zone in (a,b)\n{known_labels(workers)}",
                    "dim",
                )
            )
        else:
            store = panel_of(self).store
            body.update(preview(self.kind, self.selector, store.workers, store.models))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._update(event.value)
        if self.selector is None:
            return
        chosen, _ = select_workers(self.kind, self.selector, panel_of(self).store.workers)
        if chosen:
            self.dismiss(chosen)

    def action_cancel(self) -> None:
        self.dismiss(None)


def open_label_select(app: App[Any], kind: Kind, initial: str = "") -> None:
    """The prompt, then the usual confirmation for the workers it matched (the palette and
    the Workers view's `D` / `U` both come here)."""
    panel = panel_of(app)
    if panel.actions.refuse_read_only():
        return

    def chosen(worker_ids: list[str] | None) -> None:
        if worker_ids:
            panel.actions.request_worker_action(kind, worker_ids)

    app.push_screen(LabelSelectScreen(kind, initial), chosen)
