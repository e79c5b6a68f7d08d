"""The operator's actions on workers, jobs and the server, in one place.

Views, detail screens and the command palette all call `PanelActions`: each action asks for
confirmation in a dialog whose default is Cancel, refuses in read-only mode or while the
gateway cannot be reached, calls the gateway through the session, and says what happened.
Drains are watched until the worker has no jobs left.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from rich.text import Text
from textual.app import App
from textual.screen import Screen

from gatewaytui.client.errors import ActionError, ClientError
from gatewaytui.client.http import GatewayClient
from gatewaytui.client.rows import JobRow, WorkerRow
from gatewaytui.client.session import Session
from gatewaytui.client.store import StateStore
from gatewaytui.shared.text import plural
from gatewaytui.tui.fleet import clustered, on_replica, replica_of, stale_elsewhere
from gatewaytui.tui.formatting import age, parse_ts
from gatewaytui.tui.guardrails import drain_impact
from gatewaytui.tui.messages import PanelStateChanged
from gatewaytui.tui.screens.confirm import ConfirmScreen
from gatewaytui.tui.screens.scope import Scope, ScopeScreen
from gatewaytui.tui.screens.type_confirm import TypeToConfirmScreen
from gatewaytui.tui.widgets.virtual_table import VirtualTable

WorkerAction = Literal["drain", "undrain"]
ServerAction = Literal["drain", "undrain"]


SNAPSHOT_HISTORY_TIMEOUT_S = 10  # a snapshot is saved without history rather than never


class ActionHost(Protocol):
    """What the actions read from the panel (the app provides it)."""

    @property
    def session(self) -> Session: ...
    @property
    def store(self) -> StateStore: ...
    @property
    def read_only(self) -> bool: ...
    def now(self) -> float: ...


def selected_ids(table: VirtualTable | None) -> list[str]:
    """The marked rows, else the row under the cursor."""
    if table is None:
        return []
    if table.marked:
        return sorted(table.marked)
    return [table.cursor_id] if table.cursor_id else []


def worker_action_dialog(
    kind: str,
    worker_ids: list[str],
    workers: Mapping[str, WorkerRow],
    models: Mapping[str, Mapping[str, Any]] | None = None,
    server: Mapping[str, Any] | None = None,
) -> Screen[bool]:
    """The drain / re-add confirmation: names every worker and its jobs in flight; a drain
    also says what each model is left with, and is typed out (the model's name) when it
    would leave a model with nothing ready. `server` (the gateway's): whether this replica
    can reach the others' workers now."""
    body = Text()
    total = 0
    unreachable = 0
    server_item = server or {}
    for worker_id in worker_ids:
        worker = workers.get(worker_id) or WorkerRow(id=worker_id)
        inflight = worker.get("inflight", 0)
        total += inflight
        unreachable += stale_elsewhere(server_item, worker)
        body.append("  • ")
        body.append(worker_id, "bold")
        body.append(f"  {worker.get('status', '?')}, {plural(inflight, 'job')} in flight")
        body.append_text(on_replica(worker))
        body.append("\n")
    if unreachable:
        body.append(
            f"\n▲ This replica cannot reach Redis: {plural(unreachable, 'worker')} above "
            "on other replicas cannot be reached from here (the gateway refuses until it can; "
            "the rows are as last heard).\n",
            "bold yellow",
        )
    count = plural(len(worker_ids), "worker")
    if kind != "drain":
        they = (
            "It goes back into rotation and receives"
            if len(worker_ids) == 1
            else "They go back into rotation and receive"
        )
        body.append(f"\n{they} new jobs.")
        return ConfirmScreen(f"Re-add {count}?", body, "Re-add")
    verb = "finishes" if total == 1 else "finish"
    them = "it" if len(worker_ids) == 1 else "them"
    body.append(f"\nNo new jobs will be sent to {them}; {plural(total, 'in-flight job')} {verb}.")
    impacts = drain_impact(worker_ids, workers, models or {})
    if impacts:
        body.append("\n\n")
    for impact in impacts:
        body.append(f"  {impact.line()}\n", "bold red" if impact.left_without else "")
    stranded = [i.model for i in impacts if i.strands]
    if stranded:
        body.append(f"\n{stranded[0]} would have no ready worker: its requests fail or wait.\n")
        return TypeToConfirmScreen(f"Drain {count}?", body, stranded[0])
    return ConfirmScreen(f"Drain {count}?", body, "Drain")


def _body_of(dialog: Screen[bool]) -> Text:
    return dialog.body if isinstance(dialog, ConfirmScreen | TypeToConfirmScreen) else Text()


def cancel_job_dialog(job: JobRow, now: float) -> ConfirmScreen:
    """The job's what, where and how long (queued or running), before it is cancelled."""
    started = parse_ts(job.get("started_at"))
    since = age(now - started) if started else "-"
    replica = on_replica(job, " on replica ")
    if job.get("state") == "queued":
        where = Text.assemble(
            f"  queued {since}", replica, f", waiting for a free {job.get('model')} worker\n\n"
        )
        effect = "The client gets an error; the job never runs."
    else:
        where = Text.assemble(
            f"  on {job.get('worker') or job.get('backend') or '-'}",
            on_replica(job, " (replica ").append(")") if replica_of(job) else "",
            f", running for {since}, {plural(job.get('tokens_out', 0), 'token')} out\n\n",
        )
        effect = "The client gets an error; the worker stops."
    body = Text.assemble(
        "  job ", (job["id"], "bold"), f"  {job.get('kind')} {job.get('model')}\n", where, effect
    )  # fmt: skip
    return ConfirmScreen("Cancel this job?", body, "Cancel job", cancel_label="Keep")


def server_dialog(
    kind: ServerAction,
    context_name: str,
    inflight: int,
    scope: Scope | None = None,
    replica: str = "",
) -> TypeToConfirmScreen:
    """Draining the whole gateway is typed out: the context's name confirms it. In a fleet,
    `scope` says whether it is the panel's replica or every replica (see `scope_dialog`)."""
    if scope is not None:
        return _fleet_server_dialog(kind, context_name, inflight, scope, replica)
    if kind == "drain":
        body = Text(
            f"The gateway stops taking requests (/readyz 503, new requests 503) and waits for its "
            f"{plural(inflight, 'in-flight job')}. Undrain cancels it while it is unfinished.\n"
        )
        title = f"Drain the whole gateway '{context_name}'?"
    else:
        body = Text("The gateway accepts requests again.\n")
        title = f"Undrain '{context_name}'?"
    return TypeToConfirmScreen(title, body, context_name)


def scope_dialog(kind: ServerAction, replica: str, replicas: int) -> ScopeScreen:
    """In a fleet: this replica, or the whole fleet?"""
    verb = "Drain" if kind == "drain" else "Undrain"
    body = Text.assemble(
        "The panel is connected to replica ",
        (replica, "bold"),
        f", one of {plural(replicas, 'replica')}. ",
        "Draining one replica moves its clients to the others (its /readyz says 503); "
        "draining the whole fleet stops every replica taking requests.\n"
        if kind == "drain"
        else "Undrain this replica only, or every replica of the fleet?\n",
    )
    return ScopeScreen(f"{verb} which part of the fleet?", body, replica, replicas)


def _fleet_server_dialog(
    kind: ServerAction, context_name: str, inflight: int, scope: Scope, replica: str
) -> TypeToConfirmScreen:
    """The typed confirmation of a replica's or the fleet's drain (or undrain)."""
    fleet = scope == "fleet"
    what = f"the whole fleet '{context_name}'" if fleet else f"replica '{replica}'"
    if kind == "drain":
        who = "Every replica stops" if fleet else f"Replica {replica} stops"
        rest = "" if fleet else " The other replicas keep serving."
        body = Text(
            f"{who} taking requests (/readyz 503, new requests 503) and waits for its "
            f"in-flight jobs ({inflight} now{' fleet-wide' if fleet else ''}).{rest} "
            "Undrain cancels it while it is unfinished.\n"
        )
        return TypeToConfirmScreen(f"Drain {what}?", body, context_name)
    body = Text(f"{'Every replica accepts' if fleet else 'It accepts'} requests again.\n")
    return TypeToConfirmScreen(f"Undrain {what}?", body, context_name)


class PanelActions:
    """Drain / re-add workers, cancel a job, drain the server, save a snapshot.

    `app` shows the dialogs and notices and runs the calls; `host` is the panel's state.
    """

    def __init__(self, app: App[Any], host: ActionHost) -> None:
        self._app = app
        self._host = host
        self.drain_watch: dict[str, str] = {}  # worker id -> "drain" | "undrain"

    def refuse_read_only(self) -> bool:
        """True (and say why) when no action may be taken now."""
        host = self._host
        if host.read_only:
            why = "offline snapshot" if host.session.is_offline else "read-only mode"
            self._app.notify(f"Not allowed: this is a {why}.", severity="warning")
            return True
        if not host.session.state.live:
            self._app.notify(
                "Not connected to the gateway; try again when live.", severity="warning"
            )
            return True
        return False

    def _confirm_then(
        self, dialog: Screen[bool], run: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        def confirmed(yes: bool | None) -> None:
            if yes:
                self._app.run_worker(run(), group="actions")

        self._app.push_screen(dialog, confirmed)

    # ---- workers --------------------------------------------------------------------------

    def request_worker_action(
        self, kind: WorkerAction, worker_ids: list[str], table: VirtualTable | None = None
    ) -> None:
        """Confirm, then drain or re-add workers; progress shows until their jobs reach zero.
        The marks of `table` (the rows acted on) are cleared once one succeeded."""
        if not worker_ids or self.refuse_read_only():
            return
        store = self._host.store

        def fresh() -> Screen[bool]:
            return worker_action_dialog(kind, worker_ids, store.workers, store.models, store.server)

        def run() -> Coroutine[Any, Any, None]:
            return self._run_worker_action(kind, worker_ids, table)

        def confirmed(yes: bool | None) -> None:
            """A `y` given while the counts moved under the dialog: if the drain now strands
            a model, it is typed out after all (the rows said so live, but `y` was quick)."""
            if not yes:
                return
            now = fresh()
            if isinstance(now, TypeToConfirmScreen) and not isinstance(dialog, TypeToConfirmScreen):
                self._show_live(now, fresh)
                self._app.push_screen(now, confirmed_typed)
                return
            self._app.run_worker(run(), group="actions")

        def confirmed_typed(yes: bool | None) -> None:
            if yes:
                self._app.run_worker(run(), group="actions")

        dialog = fresh()
        self._show_live(dialog, fresh)
        self._app.push_screen(dialog, confirmed)

    @staticmethod
    def _show_live(dialog: Screen[bool], fresh: Callable[[], Screen[bool]]) -> None:
        """The dialog's rows follow the store while it is open (see `ConfirmScreen.show_state`)."""
        if isinstance(dialog, ConfirmScreen | TypeToConfirmScreen):
            dialog.live_body = lambda: _body_of(fresh())

    async def _run_worker_action(
        self, kind: WorkerAction, worker_ids: list[str], table: VirtualTable | None
    ) -> None:
        session = self._host.session
        call = session.drain_worker if kind == "drain" else session.undrain_worker
        done: list[str] = []
        for worker_id in worker_ids:
            try:
                result = await call(worker_id)
            except ClientError as exc:
                self._app.notify(f"{kind} {worker_id} refused: {exc}", severity="error", timeout=10)
                continue
            done.append(worker_id)
            if kind == "drain":
                self.drain_watch[worker_id] = "drain"
            else:
                self.drain_watch.pop(worker_id, None)
            self._app.notify(result.message or f"{kind} {worker_id}: ok", timeout=4)
        if table is not None and done:
            table.clear_marks()
        self._app.post_message(PanelStateChanged())

    def check_drains(self) -> None:
        """Tell the operator when a drained worker has no jobs left (its maintenance can start)."""
        workers = self._host.store.workers
        for worker_id in list(self.drain_watch):
            worker = workers.get(worker_id)
            if worker is None or worker.get("status") == "gone":
                self.drain_watch.pop(worker_id)
                continue
            if worker.get("draining") and worker.get("inflight", 0) == 0:
                self.drain_watch.pop(worker_id)
                self._app.notify(f"✓ {worker_id} drained: no jobs left", timeout=8)

    def draining(self) -> tuple[tuple[str, str, int], ...]:
        """The watched workers for the header: id, "drain" | "undrain", jobs left."""
        workers = self._host.store.workers
        return tuple(
            (
                worker_id,
                kind,
                (workers.get(worker_id) or WorkerRow(id=worker_id)).get("inflight", 0),
            )
            for worker_id, kind in sorted(self.drain_watch.items())
        )

    # ---- jobs -----------------------------------------------------------------------------

    def request_cancel_job(self, job_id: str) -> None:
        """Confirm (default Cancel), then ask the gateway to cancel the job."""
        if self.refuse_read_only():
            return
        job = self._host.store.jobs.get(job_id)
        if job is None:
            self._app.notify(f"job {job_id} is no longer in flight", severity="warning")
            return
        dialog = cancel_job_dialog(job, self._host.now())
        self._confirm_then(dialog, lambda: self._run_cancel(job["id"]))

    async def _run_cancel(self, job_id: str) -> None:
        try:
            result = await self._host.session.cancel_job(job_id)
        except ActionError as exc:
            if exc.status == 404:  # it finished (or failed) between the dialog and the call
                self._app.notify(f"job {job_id} already ended: nothing to cancel", timeout=6)
                return
            self._app.notify(f"cancel {job_id} refused: {exc}", severity="error", timeout=10)
            return
        except ClientError as exc:
            self._app.notify(f"cancel {job_id} refused: {exc}", severity="error", timeout=10)
            return
        self._app.notify(result.message or f"job {job_id} cancelled", timeout=4)

    # ---- the server -----------------------------------------------------------------------

    def request_server_action(self, kind: ServerAction) -> None:
        """Type the context's name to drain (or undrain) the whole gateway; in a fleet, first
        choose this replica or every replica."""
        if self.refuse_read_only():
            return
        store = self._host.store
        replica = str(store.server.get("replica") or "")
        if not (clustered(store) and replica):
            self._confirm_server(kind, None)
            return

        def chosen(scope: Scope | None) -> None:
            if scope is not None:
                self._confirm_server(kind, scope)

        replicas = max(len(store.items["replicas"]), 1)
        self._app.push_screen(scope_dialog(kind, replica, replicas), chosen)

    def _confirm_server(self, kind: ServerAction, scope: Scope | None) -> None:
        host = self._host
        store = host.store
        inflight = len(store.jobs) if scope == "fleet" else store.server.get("inflight", 0)
        replica = str(store.server.get("replica") or "")
        dialog = server_dialog(kind, host.session.name, inflight, scope, replica)
        self._confirm_then(dialog, lambda: self._run_server(kind, scope or "replica"))

    async def _run_server(self, kind: ServerAction, scope: Scope = "replica") -> None:
        session = self._host.session
        try:
            if kind == "drain":
                result = await session.drain_server(scope=scope)
            else:
                result = await session.undrain_server(scope=scope)
        except ClientError as exc:
            self._app.notify(f"server {kind} refused: {exc}", severity="error", timeout=10)
            return
        self._app.notify(result.message or f"server {kind}: ok", timeout=5)

    def save_snapshot(self, directory: Path) -> None:
        """Write the state as it is now to a timestamped file in `directory`; from a live
        gateway with its recent history (read first, in the background), from an opened
        snapshot with the history that one carries."""
        session = self._host.session
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        name = session.name.removesuffix(".json").removeprefix("gatewaytui-")  # a re-save
        path = directory / f"gatewaytui-{name}-{stamp}.json"
        if session.client is None:
            self._write_snapshot(session, path, None, "")
        else:
            saving = self._save_live(session, session.client, path)
            self._app.run_worker(saving, group="snapshot", exclusive=True)

    async def _save_live(self, session: Session, client: GatewayClient, path: Path) -> None:
        """Read the recent history, then write: the session the key was pressed in, even if
        the panel switched context while the history was read."""
        history: dict[str, Any] | None = None
        note = ""
        try:
            async with asyncio.timeout(SNAPSHOT_HISTORY_TIMEOUT_S):
                history = (await client.history.for_snapshot()).model_dump(mode="json")
        except ClientError as exc:
            note = f" (no history: {exc.message})"
        except TimeoutError:
            note = " (no history: no answer in time)"
        self._write_snapshot(session, path, history, note)

    def _write_snapshot(
        self, session: Session, path: Path, history: dict[str, Any] | None, note: str
    ) -> None:
        try:
            saved = session.save_snapshot(path, history=history)
        except (OSError, ClientError) as exc:
            self._app.notify(f"could not save snapshot: {exc}", severity="error", timeout=10)
            return
        self._app.notify(f"saved {saved}{note}", timeout=6)
