"""Backends: the OpenAI-compatible endpoints the gateway calls directly — their health, models
and load — with add/edit forms, probe, enable/disable and delete."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.binding import Binding, BindingType
from textual.screen import Screen

from gatewaytui.client.errors import ActionError, ClientError
from gatewaytui.shared.text import plural
from gatewaytui.tui.formatting import age, ms, parse_ts, status_text
from gatewaytui.tui.screens.backend_detail import BackendDetailScreen
from gatewaytui.tui.screens.backend_form import BackendFormScreen, describe_changes
from gatewaytui.tui.screens.confirm import ConfirmScreen
from gatewaytui.tui.views.base import register_view
from gatewaytui.tui.views.table_view import TableView, numeric_column
from gatewaytui.tui.widgets.virtual_table import Column

ACTIONS = frozenset({"add", "edit", "delete", "toggle_enabled", "probe"})
STATUS_ORDER = {"unhealthy": 0, "unknown": 1, "healthy": 2}
EDIT_HELP = "backends: add / edit in a form"
TOGGLE_HELP = "backends: enable or disable / probe now"


def models_text(backend: Mapping[str, Any]) -> str:
    models = backend.get("models") or []
    if not models:
        return "-"
    return f"{len(models)}: {', '.join(models)}"


def note(backend: Mapping[str, Any], now: float) -> Text:
    """Why a backend is not serving (disabled, out of routing until …), else its last error."""
    if not backend.get("enabled", True):
        return Text("disabled", "dim")
    error = backend.get("last_error") or ""
    if not backend.get("routing", True):
        retry = parse_ts(backend.get("next_retry_at"))
        when = f", retry {age(retry - now)}" if retry else ""
        return Text.assemble(("out" + when, "bold red"), " · ", Text(error))
    return Text(error, "yellow") if error else Text("")


def _identity_columns(styles: dict[str, str]) -> list[Column]:
    """What the backend is: id, type, URL, status, on/off, models."""
    return [
        Column("id", "ID", lambda b: b["id"], width=14, min_width=10),
        Column("type", "TYPE", lambda b: b.get("type", ""), width=12, priority=4),
        Column("url", "URL", lambda b: b.get("url", ""), width=26, priority=2),
        Column(
            "status",
            "STATUS",
            lambda b: status_text(b.get("status"), styles),
            sort_key=lambda b: STATUS_ORDER.get(b.get("status", ""), 9),
            width=11,
        ),
        Column(
            "enabled",
            "ON",
            lambda b: "yes" if b.get("enabled", True) else Text("no", "bold"),
            width=3,
        ),
        Column(
            "models",
            "MODELS",
            models_text,
            sort_key=lambda b: len(b.get("models") or ()),
            width=16,
            flex=True,
            priority=1,
        ),
    ]


def _load_columns(now: Callable[[], float]) -> list[Column]:
    """How it does: load, latency, when it was last probed, what went wrong."""

    def probed(b: Mapping[str, Any]) -> str:
        at = parse_ts(b.get("last_probe_at"))
        return age(now() - at) if at else "never"

    return [
        Column(
            "inflight",
            "LOAD",
            lambda b: f"{b.get('inflight', 0)}/{b.get('max_concurrency', 0)}",
            sort_key=lambda b: b.get("inflight", 0),
            width=5,
            align="right",
            priority=5,
        ),
        numeric_column("latency_ms", "LATENCY", fmt=ms, width=7, priority=3),
        Column(
            "probed",
            "PROBED",
            probed,
            sort_key=lambda b: b.get("last_probe_at") or "",
            width=6,
            align="right",
            ticking=True,
            priority=2,
        ),
        Column(
            "note",
            "NOTE",
            lambda b: note(b, now()),
            sort_key=lambda b: b.get("last_error") or "",
            width=16,
            flex=True,
            priority=3,
            ticking=True,
        ),
    ]


@register_view("6")
class BackendsView(TableView):
    view_id = "backends"
    title = "Backends"
    collection = "backends"
    default_sort = ("id", False)
    selectable = True  # enter describes the backend (read-only too); `e` edits

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "add", "Add", id="backends.add", tooltip=EDIT_HELP),
        Binding("e", "edit", "Edit", id="backends.edit", tooltip=EDIT_HELP),
        Binding("t", "toggle_enabled", "Enable/disable", id="backends.toggle", tooltip=TOGGLE_HELP),
        Binding("P", "probe", "Probe", id="backends.probe", tooltip=TOGGLE_HELP),
        Binding(
            "delete",
            "delete",
            "Delete",
            id="backends.delete",
            tooltip="backends: delete the selected backend (confirm with y)",
        ),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._cursor_to: str | None = None
        # The backends as our own last edits returned them: the state stream lags by up to a
        # flush, so a second `t` must not send the revision the first one replaced.
        self._ours: dict[str, dict[str, Any]] = {}
        self._mutating = asyncio.Lock()  # one edit at a time, each from the freshest revision

    def _fresh(self, backend_id: str) -> dict[str, Any] | None:
        """The newest version we know of: the stream's, or the one our last edit returned."""
        streamed = self.panel.store.backends.get(backend_id)
        known = self._ours.get(backend_id)
        if known is None or (
            streamed is not None and streamed.get("revision", 0) >= known.get("revision", 0)
        ):
            return dict(streamed) if streamed is not None else None
        return dict(known)

    def columns(self) -> Sequence[Column]:
        panel = self.panel
        return [*_identity_columns(panel.status_styles), *_load_columns(panel.now)]

    # -- actions --------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Edits are hidden in read-only mode (a snapshot, a viewer token, --read-only)."""
        if action in ACTIONS:
            return not self.panel.read_only
        return True

    def _selected(self) -> dict[str, Any] | None:
        row_id = self.table.cursor_id
        return dict(self.panel.store.backends.get(row_id or "") or {}) or None

    def _allowed(self) -> bool:
        return not self.panel.actions.refuse_read_only()

    def action_add(self) -> None:
        if self._allowed():
            self.app.push_screen(BackendFormScreen(None), self._saved)

    def action_edit(self) -> None:
        backend = self._selected()
        if backend is not None and self._allowed():
            self._open_editor(backend["id"])

    @work(exclusive=True, group="backends")
    async def _open_editor(self, backend_id: str) -> None:
        """The form starts from the gateway's current version (and its revision)."""
        try:
            backend = await self.panel.session.backend(backend_id)
        except ClientError as exc:
            self.app.notify(f"cannot edit {backend_id}: {exc}", severity="error", timeout=8)
            return
        self.app.push_screen(BackendFormScreen(backend.model_dump(mode="json")), self._saved)

    def _saved(self, backend: dict[str, Any] | None) -> None:
        if backend is not None:
            self._ours[backend["id"]] = backend
            self.app.notify(f"backend {backend['id']} saved (revision {backend['revision']})")
            if not self.table.move_cursor_to(backend["id"]):
                self._cursor_to = backend["id"]  # its row arrives with the next update

    def detail_screen(self, row_id: str) -> Screen[None]:
        """Enter describes the backend, read-only (its `e` opens the edit form)."""
        return BackendDetailScreen(row_id, edit=self._edit_from_details)

    def _edit_from_details(self, backend_id: str) -> None:
        if self._allowed():
            self._open_editor(backend_id)
        if self._cursor_to is not None and self.table.move_cursor_to(self._cursor_to):
            self._cursor_to = None

    def action_delete(self) -> None:
        backend = self._selected()
        if backend is None or not self._allowed():
            return
        inflight = backend.get("inflight", 0)
        body = Text.assemble(
            "  ",
            (backend["id"], "bold"),
            "  ",
            Text(backend.get("url", "")),
            f"\n  {plural(len(backend.get('models') or []), 'model')}, "
            f"{plural(inflight, 'call')} in flight\n\n",
            "It leaves routing at once and is removed from the backends file; "
            "its calls in flight finish.",
        )

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._delete(backend["id"], backend)

        self.app.push_screen(ConfirmScreen("Delete this backend?", body, "Delete"), confirmed)

    @work(group="backends-actions")
    async def _delete(
        self, backend_id: str, seen: Mapping[str, Any], *, force: bool = False
    ) -> None:
        """Delete what the operator confirmed; if it changed since, say how and ask again."""
        async with self._mutating:
            ours = self._ours.get(backend_id)
            if not force and ours and ours.get("revision", 0) > seen.get("revision", 0):
                seen = ours  # our own later edit (e.g. a toggle just before): not a conflict
            try:
                result = await self.panel.session.delete_backend(
                    backend_id, revision=seen.get("revision")
                )
            except ActionError as exc:
                if exc.code == "revision_conflict" and exc.current is not None:
                    self._conflict("delete", seen, exc.current)
                else:
                    self.app.notify(
                        f"delete {backend_id} refused: {exc}", severity="error", timeout=10
                    )
                return
            except ClientError as exc:
                self.app.notify(f"delete {backend_id} failed: {exc}", severity="error", timeout=10)
                return
            self._ours.pop(backend_id, None)
        self.app.notify(result.message or f"backend {backend_id} deleted", timeout=6)

    def action_toggle_enabled(self) -> None:
        backend = self._selected()
        if backend is not None and self._allowed():
            self._toggle(backend["id"])

    @work(group="backends-actions")
    async def _toggle(
        self, backend_id: str, enabled: bool | None = None, base: Mapping[str, Any] | None = None
    ) -> None:
        """Flip `enabled` of the freshest version we know (our previous edit's response if the
        stream has not caught up); `enabled`/`base` given: a retry after a conflict."""
        async with self._mutating:
            seen = dict(base) if base is not None else self._fresh(backend_id)
            if seen is None:
                return
            if enabled is None:
                enabled = not seen.get("enabled", True)
            elif seen.get("enabled", True) == enabled:
                self.app.notify(f"backend {backend_id} is already {_state(enabled)}", timeout=4)
                return
            try:
                saved = await self.panel.session.patch_backend(
                    backend_id, {"enabled": enabled}, revision=seen.get("revision")
                )
            except ActionError as exc:
                if exc.code == "revision_conflict" and exc.current is not None:
                    self._conflict("enable" if enabled else "disable", seen, exc.current)
                else:
                    what = "enable" if enabled else "disable"
                    self.app.notify(
                        f"{what} {backend_id} refused: {exc}", severity="error", timeout=10
                    )
                return
            except ClientError as exc:
                self.app.notify(f"{backend_id}: {exc}", severity="error", timeout=10)
                return
            self._ours[backend_id] = saved.model_dump(mode="json")
        self.app.notify(f"backend {backend_id} {_state(enabled)}", timeout=4)

    def _conflict(self, what: str, seen: Mapping[str, Any], current: dict[str, Any]) -> None:
        """Someone else changed it first: show what changed; retrying acts on their version."""
        backend_id = current.get("id") or seen.get("id") or "?"
        body = Text.assemble(
            "  ",
            (str(backend_id), "bold"),
            f" changed on the gateway (revision {seen.get('revision')} → "
            f"{current.get('revision')}):\n",
        )
        for line in describe_changes(seen, current):
            body.append("  • ")
            body.append(line)
            body.append("\n")
        body.append(f"\nNot done. {what.capitalize()} it anyway, on their version?")

        def confirmed(yes: bool | None) -> None:
            if not yes:
                self.app.notify(f"{what} {backend_id}: left as it is", timeout=4)
            elif what == "delete":
                self._delete(backend_id, current, force=True)
            else:
                self._toggle(backend_id, what == "enable", current)

        screen = ConfirmScreen(f"{backend_id} changed meanwhile", body, f"{what.capitalize()}")
        self.app.push_screen(screen, confirmed)

    def action_probe(self) -> None:
        backend = self._selected()
        if backend is not None and self._allowed():
            self._probe(backend["id"])

    @work(group="backends-actions")
    async def _probe(self, backend_id: str) -> None:
        self.app.notify(f"probing {backend_id} …", timeout=2)
        try:
            result = await self.panel.session.probe_backend(backend_id)
        except ClientError as exc:
            self.app.notify(f"probe {backend_id} failed: {exc}", severity="error", timeout=10)
            return
        if result.ok:
            self.app.notify(
                f"✓ {backend_id}: {plural(len(result.models), 'model')} "
                f"in {result.latency_ms:.0f} ms",
                timeout=6,
            )
        else:
            self.app.notify(f"✖ {backend_id}: {result.error}", severity="error", timeout=10)


def _state(enabled: bool) -> str:
    return "enabled" if enabled else "disabled"
