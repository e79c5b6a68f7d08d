"""Shown instead of silence when the gateway cannot be followed: unreachable with the retry
countdown, or refused with how to give this context a token.

The banner renders from one reactive `BannerState` the app sets; it never reads the app.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from gatewaytui.client.connection import ConnectionState, ConnectionStatus
from gatewaytui.shared.text import http_error_text

TokenSource = tuple[str, str, bool]  # kind (token_env | token_file), where, is it set


@dataclass(frozen=True)
class BannerState:
    """The connection as the banner needs it (the retry countdown is taken when built)."""

    connection: ConnectionState
    context_name: str
    url: str
    retry_in: float | None = None
    has_state: bool = False  # the last known state is on screen (stale)
    token_source: TokenSource | None = None
    cluster: str = "off"  # the gateway's `server.cluster`: `degraded` gets a warning
    replica: str | None = None

    def message(self) -> tuple[Text | None, bool]:
        """The banner's text (None: hidden) and whether it is an error."""
        state = self.connection
        if state.status is ConnectionStatus.UNAUTHORIZED:
            return self._unauthorized(), True
        if state.status in (ConnectionStatus.CONNECTING, ConnectionStatus.RECONNECTING) and (
            state.attempt > 0 or state.last_error
        ):
            return self._unreachable(), False
        if self.cluster == "degraded":
            return self._degraded(), False
        return None, False

    def _degraded(self) -> Text:
        who = f"replica '{self.replica}'" if self.replica else "this replica"
        return Text.assemble(
            ("Fleet degraded: ", "bold"),
            f"{who} cannot reach Redis. It serves its own workers and backends; the other "
            "replicas' rows are as last known, and actions on them fail until Redis is back.",
        )

    def _unauthorized(self) -> Text:
        state = self.connection
        error = str(state.last_error or "")
        if state.http_status:  # the error may say it already
            error = http_error_text(state.http_status, error)
        return Text.assemble(
            ("Not authorized: ", "bold"),
            f"gateway context '{self.context_name}' ({self.url}) refused the token",
            f" ({error}).\n",
            self.token_hint(),
        )

    def _unreachable(self) -> Text:
        state = self.connection
        retry = self.retry_in
        when = f"retrying in {retry:.0f}s" if retry is not None else "retrying now"
        since = datetime.fromtimestamp(state.since).strftime("%H:%M:%S")
        stale = " Showing the last known state (stale)." if self.has_state else ""
        return Text.assemble(
            ("Cannot reach ", "bold"),
            (f"'{self.context_name}'", "bold"),
            f" at {self.url}: {state.last_error or 'no answer'}. ",
            f"Unreachable since {since}; {when} (attempt {state.attempt + 1}; ",
            ("r", "bold"),
            f" retries now).{stale}",
        )

    def token_hint(self) -> Text:
        """How to fix a refused token: name the source this context actually uses."""
        if self.token_source is None:
            name = self.context_name.upper().replace("-", "_").replace(".", "_")
            return Text.assemble(
                "This context has no token. Give it an operator or viewer token: in the config ",
                "file set ",
                (f"token_env: GATEWAYTUI_{name}_TOKEN", "bold"),
                " (or token_file: …) under the context, then export that variable.",
            )
        kind, where, is_set = self.token_source
        if kind == "token_env" and not is_set:
            return Text.assemble(
                "The token comes from ",
                (f"${where}", "bold"),
                " (this context's token_env), which is not set: export it with an operator or "
                "viewer token of this gateway.",
            )
        what = f"${where}" if kind == "token_env" else where
        return Text.assemble(
            "Check the token in ",
            (what, "bold"),
            f" (this context's {kind}): it must be an operator or viewer token of this gateway.",
        )


class ConnectionBanner(Static):
    DEFAULT_CSS = """
    ConnectionBanner {
        display: none; height: auto; margin: 0 1; padding: 0 1;
        border: round $warning; background: $boost;
    }
    ConnectionBanner.-error { border: round $error; }
    ConnectionBanner.-visible { display: block; }
    """

    state: reactive[BannerState | None] = reactive(None, repaint=False, always_update=True)

    def watch_state(self, state: BannerState | None) -> None:
        text, error = state.message() if state is not None else (None, False)
        self.show_message(text, error=error)

    def show_message(self, text: Text | None, *, error: bool = False) -> None:
        if text is None:
            self.set_class(False, "-visible")
            return
        self.set_class(True, "-visible")
        self.set_class(error, "-error")
        if text.plain != getattr(self, "_plain", None):
            self._plain = text.plain
            self.update(text)
