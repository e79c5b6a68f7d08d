"""`?`: every key that applies, with its binding id (for remapping in the config file)."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS: list[tuple[str, str, str]] = [
    (
        "1 … 7",
        "switch view (Overview, Workers, Jobs, Events, MCP, Backends, Plugins)",
        "app.view_N",
    ),
    ("/", "filter rows (regex over all columns)", "app.filter"),
    ("r", "reconnect now (while the gateway cannot be reached)", "app.retry_now"),
    ("esc", "back / clear the filter", "app.back"),
    ("o / O", "sort by the next column / reverse", "table.sort, table.reverse"),
    ("enter", "open: worker, job or event details, backend form", "table.select"),
    ("space", "workers: mark rows (bulk drain / re-add)", "table.mark"),
    ("d", "drain the selected or marked workers", "app.drain"),
    ("u", "re-add (undrain) the selected or marked workers", "app.undrain"),
    ("x", "cancel the selected job", "app.cancel_job"),
    ("x", "job details: cancel this job", "job_detail.cancel"),
    ("esc, q", "details: back", "detail.back, job_detail.back, event_detail.back"),
    ("f", "events: follow the newest", "events.follow"),
    ("e", "plugins: export the effective configuration (YAML, env, flags)", "plugins.export"),
    ("a / e", "backends: add / edit (enter too) in a form", "backends.add, backends.edit"),
    ("t / P", "backends: enable or disable / probe now", "backends.toggle, backends.probe"),
    ("delete", "backends: delete the selected backend (confirm with y)", "backends.delete"),
    ("p", "pause / resume live updates", "app.pause"),
    ("S", "save the current state to a snapshot file", "app.save_snapshot"),
    ("ctrl+p", "command palette: server drain, contexts, themes", "app.command_palette"),
    ("?", "this help", "app.help"),
    ("q", "quit", "app.quit"),
]


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 90; max-width: 98%; height: auto; max-height: 90%;
        border: round $primary; background: $panel; padding: 1 2;
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "close", "Close", id="help.close"),
    ]

    def rows(self) -> list[tuple[str, str, str]]:
        """`KEYS` with the config's keymap applied: a remapped binding shows its new keys."""
        keymap: dict[str, str] = dict(getattr(getattr(self.app, "config", None), "keymap", {}))
        rows = []
        for key, what, binding_ids in KEYS:
            ids = [part.strip() for part in binding_ids.split(",")]
            if any(binding_id in keymap for binding_id in ids):
                if len(ids) == 1:
                    key = keymap[ids[0]].replace(",", " / ")
                else:
                    keys = key.split(" / ")
                    if len(keys) == len(ids):
                        key = " / ".join(
                            keymap.get(i, k).replace(",", " / ")
                            for i, k in zip(ids, keys, strict=True)
                        )
            rows.append((key, what, binding_ids))
        return rows

    def compose(self) -> ComposeResult:
        table = Table(box=None, padding=(0, 2), expand=True)
        table.add_column("key", style="bold")
        table.add_column("what it does")
        table.add_column("binding id", style="dim")
        for key, what, binding_id in self.rows():
            table.add_row(Text(key), Text(what), Text(binding_id))
        note = Text(
            "\nRemap any key in the config file: keymap: {app.drain: ctrl+d}. "
            "Actions are hidden in read-only mode.",
            "dim",
        )
        with VerticalScroll():
            yield Static(Text("gatewaytui keys", "bold"))
            yield Static(table)
            yield Static(note)

    def action_close(self) -> None:
        self.dismiss(None)
