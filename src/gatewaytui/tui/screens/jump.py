"""`:` jumps (k9s habit): `:w gpu-a100-3`, `:j <job id>`, `:b vllm-a`, or a view by name.

`resolve_jump` turns the typed line into a `Jump` (a view, and a row to put the cursor on)
or a one-line error with a "did you mean"; the prompt completes commands and ids from the
live state as they are typed (`→` or `tab` takes the suggestion).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Input, Static

from gatewaytui.client.store import StateStore
from gatewaytui.shared.text import did_you_mean
from gatewaytui.tui.context import panel_of

# The commands that take an id: command -> (view id, store collection, what it is called).
KINDS = {"w": ("workers", "workers", "worker"), "j": ("jobs", "jobs", "job"),
         "b": ("backends", "backends", "backend")}  # fmt: skip
ALIASES = {
    "w": "w", "wk": "w", "worker": "w", "workers": "w",
    "j": "j", "job": "j", "jobs": "j",
    "b": "b", "be": "b", "backend": "b", "backends": "b",
}  # fmt: skip
SHOWN = 6  # candidates listed under the prompt


@dataclass(frozen=True)
class Jump:
    view_id: str
    row_id: str | None = None


class JumpError(ValueError):
    """What the line cannot mean, in one line (shown under the prompt)."""


def _collection(store: StateStore, name: str) -> Mapping[str, Any]:
    items: Mapping[str, Any] = store.items.get(name) or {}
    return items


def _views(views: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Every name a view answers to: its id, its title, and `history`/`hist`-style prefixes
    of at least 3 letters."""
    names: dict[str, str] = {}
    for view_id, title in views:
        for name in {view_id, title.lower()}:
            names[name] = view_id
            for n in range(3, len(name)):
                names.setdefault(name[:n], view_id)
    return names


def resolve_jump(line: str, store: StateStore, views: Sequence[tuple[str, str]]) -> Jump:
    """`w gpu-a100-3` -> Jump("workers", "gpu-a100-3"); `jobs` -> Jump("jobs")."""
    words = line.strip().removeprefix(":").split()
    if not words:
        raise JumpError("type a view (workers, jobs, …) or w/j/b and an id")
    command, rest = words[0].lower(), words[1:]
    names = _views(views)
    if len(rest) > 1:
        raise JumpError(f"one id at a time: {' '.join(rest)!r}")
    kind = ALIASES.get(command)
    if kind is None:
        if command in names and not rest:
            return Jump(names[command])
        choices = sorted({*ALIASES, *(v for v, _ in views)})
        raise JumpError(f"unknown command {command!r}{did_you_mean(command, choices)}")
    view_id, collection, what = KINDS[kind]
    if not rest:
        return Jump(view_id)
    wanted = rest[0]
    items = _collection(store, collection)
    if wanted in items:
        return Jump(view_id, wanted)
    prefixed = [i for i in items if i.startswith(wanted)]
    if len(prefixed) == 1:
        return Jump(view_id, prefixed[0])
    if kind == "j":
        hint = " (ended jobs are in :history)"
    else:
        hint = did_you_mean(wanted, items) or (
            f" ({len(prefixed)} start with it: {', '.join(sorted(prefixed)[:3])}…)"
            if prefixed
            else ""
        )
    raise JumpError(f"no {what} {wanted!r}{hint}")


def candidates(line: str, store: StateStore, views: Sequence[tuple[str, str]]) -> list[str]:
    """Completions of the line as typed: commands and view names, then ids."""
    text = line.lstrip().removeprefix(":")
    words = text.split(" ")
    if len(words) == 1:
        names = sorted({*ALIASES, *(v for v, _ in views)}, key=lambda n: (len(n) <= 1, n))
        return [n for n in names if n.startswith(words[0].lower()) and n != words[0]]
    kind = ALIASES.get(words[0].lower())
    if kind is None or len(words) != 2:
        return []
    ids: Iterable[str] = _collection(store, KINDS[kind][1])
    return [f"{words[0]} {i}" for i in sorted(ids) if i.startswith(words[1])]


class JumpSuggester(Suggester):
    """Inline completion from the live ids (not cached: they change)."""

    def __init__(self, screen: JumpScreen) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self._screen = screen

    async def get_suggestion(self, value: str) -> str | None:
        found = self._screen.candidates(value)
        return found[0] if found else None


class JumpScreen(ModalScreen[Jump | None]):
    """The `:` prompt, docked at the bottom like a shell's."""

    CSS_PATH = "jump.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="jump.cancel"),
        Binding("tab", "complete", "Complete", id="jump.complete", show=False),
    ]

    def __init__(self, views: Sequence[tuple[str, str]]) -> None:
        super().__init__()
        self.views = list(views)

    def compose(self) -> ComposeResult:
        with Vertical():
            with Horizontal():
                yield Static(":", id="jump-colon")
                yield Input(
                    placeholder="w <worker>  j <job>  b <backend>  workers  jobs …",
                    suggester=JumpSuggester(self),
                    id="jump-input",
                )
            yield Static(id="jump-note")

    def on_mount(self) -> None:
        box = self.query_one(Input)
        box.focus()
        self._note(box.value)  # keys typed fast may already be in the box

    def candidates(self, value: str) -> list[str]:
        return candidates(value, panel_of(self).store, self.views)

    def _note(self, value: str, error: str | None = None) -> None:
        note = self.query_one("#jump-note", Static)
        if error is not None:
            note.update(Text(error, "bold red"))
            return
        found = self.candidates(value) if value.strip() else []
        if found:
            more = f"  (+{len(found) - SHOWN})" if len(found) > SHOWN else ""
            note.update(Text("  ".join(f.split(" ")[-1] for f in found[:SHOWN]) + more))
        else:
            note.update(Text("enter jumps · → or tab completes · esc cancels", "dim"))

    def on_input_changed(self, event: Input.Changed) -> None:
        self._note(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            jump = resolve_jump(event.value, panel_of(self).store, self.views)
        except JumpError as exc:
            self._note(event.value, str(exc))
            return
        self.dismiss(jump)

    def action_complete(self) -> None:
        box = self.query_one(Input)
        found = self.candidates(box.value)
        if found:
            box.value = found[0] + (" " if len(found[0].split(" ")) == 1 else "")
            box.cursor_position = len(box.value)

    def action_cancel(self) -> None:
        self.dismiss(None)
