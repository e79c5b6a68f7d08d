"""A worker process's own log lines, live, like `kubectl logs -f` (`l` on a worker).

The gateway asks the worker over its own connection only while this screen is open; closing
it stops the stream on the worker. A worker that does not offer logs (an older one) says so
in one line; so does a worker that has gone, or an offline snapshot (no process to ask).
"""

from __future__ import annotations

import time
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import ModalScreen
from textual.widgets import RichLog, Static

from gatewaytui.client.errors import ActionError, ClientError
from gatewaytui.schema.api import WorkerLogs
from gatewaytui.schema.protocol import LogLine
from gatewaytui.shared.text import plural
from gatewaytui.tui.bindings import DETAILS_BACK
from gatewaytui.tui.context import PanelContext, panel_of
from gatewaytui.tui.widgets.footer import GatewayFooter

LOGS_HELP = "worker: its own log lines, live"
TAIL = 500
MAX_LINES = 5000
LEVEL_STYLES = {"ERROR": "bold red", "CRITICAL": "bold red", "WARNING": "yellow", "DEBUG": "dim"}


def log_line_text(line: LogLine) -> Text:
    """`12:03:07 WARNING relay: message` (UTC): the message is Text, never markup."""
    stamp = time.strftime("%H:%M:%S", time.gmtime(line.ts))  # UTC, like the gateway's logs
    logger = line.logger.rsplit(".", 1)[-1]
    return Text.assemble(
        (stamp, "dim"),
        " ",
        (f"{line.level:<7}", LEVEL_STYLES.get(line.level, "")),
        " ",
        (f"{logger}: ", "dim"),
        Text(line.message),
    )


def refusal_text(worker_id: str, exc: ClientError) -> str:
    """Why there are no logs, in one line an operator can act on."""
    if isinstance(exc, ActionError):
        if exc.code == "logs_unsupported" or exc.status == 501:
            return f"worker {worker_id} does not support logs (an older or third-party worker)"
        if exc.status == 409:
            return f"worker {worker_id} is not connected: no process to ask for logs"
        if exc.status == 504:
            return f"worker {worker_id} did not answer the logs request"
        if exc.status == 404:
            return f"worker {worker_id} is no longer known to the gateway"
    return f"cannot get logs of {worker_id}: {exc.message}"


class WorkerLogsScreen(ModalScreen[None]):
    """Follows one worker's log lines until closed."""

    CSS_PATH = "worker_logs.tcss"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", "Back", id="logs.back", tooltip=DETAILS_BACK),
        Binding("f", "toggle_follow", "Follow", id="logs.follow", tooltip="logs: follow / pause"),
        Binding("r", "restart", "Reload", id="logs.reload", tooltip="logs: read again"),
    ]

    def __init__(self, worker_id: str) -> None:
        super().__init__()
        self.worker_id = worker_id
        self.following = True
        self.state = "connecting"
        self.lines_shown = 0

    @property
    def panel(self) -> PanelContext:
        return panel_of(self)

    def compose(self) -> ComposeResult:
        yield Static(id="logs-title")
        yield RichLog(id="logs", max_lines=MAX_LINES, wrap=False, markup=False, auto_scroll=True)
        yield GatewayFooter()

    def on_mount(self) -> None:
        self._title()
        self._follow()

    def _title(self) -> None:
        mode = "following" if self.following else "paused (f follows)"
        self.query_one("#logs-title", Static).update(
            Text.assemble(
                (" logs ", "bold reverse"),
                " worker ",
                (self.worker_id, "bold"),
                f" · {self.state} · {mode}",
            )
        )

    def _note(self, text: str, style: str = "bold") -> None:
        self.query_one(RichLog).write(Text(text, style))

    @work(exclusive=True, group="worker-logs")
    async def _follow(self) -> None:
        client = self.panel.session.client
        if client is None:
            self.state = "offline"
            self._note("an offline snapshot has no worker process to ask for logs")
            self._title()
            return
        log = self.query_one(RichLog)
        try:
            async for item in client.follow_worker_logs(self.worker_id, tail=TAIL):
                if isinstance(item, str):
                    self.state = "ended"
                    self._note(f"— {item} (r reads again) —")
                    break
                if self.state != "live":
                    self.state = "live"
                    self._title()
                self._show(log, item)
        except ClientError as exc:
            self.state = "unavailable"
            self._note(refusal_text(self.worker_id, exc), "bold yellow")
        self._title()

    def _show(self, log: RichLog, batch: WorkerLogs) -> None:
        if batch.dropped:
            self._note(f"… {plural(batch.dropped, 'line')} skipped …")
        for line in batch.lines:
            log.write(log_line_text(line), scroll_end=self.following)
            self.lines_shown += 1

    def action_close(self) -> None:
        self.workers.cancel_group(self, "worker-logs")  # closing stops the worker's stream
        self.dismiss(None)

    def action_toggle_follow(self) -> None:
        self.following = not self.following
        log = self.query_one(RichLog)
        log.auto_scroll = self.following
        if self.following:
            log.scroll_end(animate=False)
        self._title()

    def action_restart(self) -> None:
        self.query_one(RichLog).clear()
        self.lines_shown = 0
        self.state = "connecting"
        self._title()
        self._follow()
