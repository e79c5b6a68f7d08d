"""The top lines: who and what we look at (context in its colour, server and connection
state), how many (workers, jobs, queue, version: on the same line when it fits, else on a line
of their own), then where we are (breadcrumbs, filter, rows, marks, drains).

The header renders from one reactive `HeaderState` the app sets; it never reads the app.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich.color import Color as RichColor
from rich.color import ColorParseError as RichColorParseError
from rich.style import Style
from rich.text import Text
from textual import events
from textual.color import Color, ColorParseError
from textual.reactive import reactive
from textual.widgets import Static

from gatewaytui.client.connection import ConnectionStatus
from gatewaytui.tui.formatting import age, parse_ts, status_text


def badge_style_for(color: str | None) -> Style:
    """The header badge of a context: bold, reversed, in the context's colour.

    The config accepts any Textual colour (`red`, `ansi_bright_red`, `#d7005f`, `rgb(1, 2, 3)`,
    `hsl(0, 100%, 50%)`), most of which Rich's style syntax cannot read; so the colour is
    parsed by Textual and handed to Rich as a colour object.
    """
    if not color:
        return Style(bold=True, reverse=True)
    try:  # Rich's own names first: `red` stays the terminal's red (16-colour themes, SSH)
        return Style(bold=True, reverse=True, color=RichColor.parse(color))
    except RichColorParseError:
        pass
    try:
        rich_color = Color.parse(color).rich_color
    except ColorParseError:  # validated by the config; a bad one just loses its colour
        return Style(bold=True, reverse=True)
    return Style(bold=True, reverse=True, color=rich_color)


UNKNOWN_STATUS = "? unknown"


def server_line(
    server: Mapping[str, Any], styles: dict[str, str], *, known: bool, now: float
) -> tuple[Text | None, str | None]:
    """The server's status, and how long and with how many jobs left the whole server has
    been draining. While the gateway cannot be followed (`known` False) its status is
    unknown: the last one seen ("● ready") would be a guess drawn as a fact."""
    if not server.get("status"):
        return None, None
    if not known:
        return Text(UNKNOWN_STATUS, "bold yellow"), None
    status = status_text(server["status"], styles)
    if not server.get("draining"):
        return status, None
    started = parse_ts(server.get("drain_started_at"))
    since = f" {age(now - started)}" if started else ""
    return status, f"{since} ({server.get('inflight', 0)} left)"


@dataclass(frozen=True)
class ConnectionLine:
    """The connection part of the first line: live, a snapshot (and when), or retrying."""

    status: ConnectionStatus
    snapshot_taken: float | None = None  # epoch seconds, for an offline snapshot
    retry_in: float | None = None
    data_age: float | None = None  # seconds since the last data, while not live

    def text(self, *, short: bool = False) -> Text:
        status = self.status
        if status is ConnectionStatus.LIVE:
            return Text("● live", "green")
        if status is ConnectionStatus.OFFLINE:  # and when it was taken (UTC, as on the wire)
            taken = self.snapshot_taken
            when = datetime.fromtimestamp(taken, tz=UTC) if taken is not None else None
            if short:
                text = f"◆ snapshot {when:%Y-%m-%d %H:%M:%S} UTC" if when else "◆ snapshot"
            else:
                taken_at = f" taken {when:%Y-%m-%d %H:%M:%S} UTC" if when else ""
                text = f"◆ offline snapshot{taken_at}"
            return Text(text, "cyan")
        if status is ConnectionStatus.UNAUTHORIZED:
            return Text("✖ not authorized", "bold red")
        retry = self.retry_in
        suffix = f" (retry in {retry:.0f}s)" if retry is not None and not short else ""
        line = Text(f"◌ {status.value}{suffix}", "bold yellow")
        if self.data_age is not None:  # what is on screen is this old
            line.append(f" · data {age(self.data_age)} old", "yellow")
        return line


# The cells the counts may take as a fleet grows: 5-digit workers, jobs and queue, a version.
COUNTS_ROOM = len("workers 10000/10000 · jobs 10000 · queue 10000/10000 · gateway 0.10.0")


@dataclass(frozen=True)
class Counts:
    serving: int = 0
    workers: int = 0
    jobs: int = 0
    queue_length: int = 0
    queue_capacity: int = 0
    version: str | None = None
    fleet: Text | None = None  # a fleet's `replicas 3/3 · ` (and `▲ degraded`), first

    def text(self) -> Text:
        counts = Text(
            f"workers {self.serving}/{self.workers} · jobs {self.jobs}"
            f" · queue {self.queue_length}/{self.queue_capacity}"
        )
        if self.fleet is not None:
            counts = Text.assemble(self.fleet, counts)
        if self.version:
            counts.append(f" · gateway {self.version}", "dim")
        return counts


@dataclass(frozen=True)
class Place:
    """The second line: breadcrumbs and the view's own state."""

    context_name: str
    view_title: str
    filter_text: str = ""
    filter_error: str | None = None  # shown while the filter is being typed
    rows: tuple[int, int] | None = None  # visible, total
    marked: int = 0
    drains: tuple[tuple[str, str, int], ...] = ()  # worker id, "drain" | "undrain", jobs left
    hint: Text | None = None

    def text(self) -> Text:
        line = Text.assemble((self.context_name, "bold"), " › ", (self.view_title, "bold"))
        if self.filter_text:
            line.append("  filter ")
            line.append(f"/{self.filter_text}/", "italic")
        if self.filter_error is not None:
            line.append("  ✖ ", "bold red")
            line.append(self.filter_error, "red")
        if self.rows is not None:
            line.append(f"  {self.rows[0]}/{self.rows[1]} rows")
            if self.marked:
                line.append(f"  {self.marked} marked", "bold")
        if self.drains:
            parts = [
                f"{worker_id} ({left} left)" if kind == "drain" else worker_id
                for worker_id, kind, left in self.drains
            ]
            line.append("  draining: " + ", ".join(parts), "yellow")
        if self.hint is not None:
            line.append("  ")
            line.append_text(self.hint)
        return line


@dataclass(frozen=True)
class HeaderState:
    """Everything the header shows; equal states draw the same lines."""

    badge: str
    place: Place
    connection: ConnectionLine
    counts: Counts = field(default_factory=Counts)
    badge_color: str | None = None
    read_only: bool = False
    paused: bool = False
    server_status: Text | None = None  # styled; dimmed while the gateway cannot be reached
    server_drain: str | None = None  # " 1m20s (3 left)" while the whole server drains

    def who(self) -> Text:
        """The first line without the connection: badge, modes, the server's status."""
        line = Text()
        line.append(f" {self.badge} ", badge_style_for(self.badge_color))
        line.append(" ")
        if self.read_only:
            line.append("READ-ONLY", "bold")
            line.append(" ")
        if self.paused:
            line.append("⏸ PAUSED", "bold reverse yellow")
            line.append(" ")
        if self.server_status is not None:
            line.append_text(self.server_status)
            if self.server_drain is not None:
                line.append(self.server_drain, "bold yellow")
            line.append(" · ")
        return line

    def lines(self, width: int) -> list[Text]:
        """Two lines when the counts fit next to the context and its state, three when not
        (80 columns), so the jobs, the queue and the version are never cut off. Whether they
        fit is judged with room for the counts to grow (`COUNTS_ROOM`): a header whose height
        followed the counts would make the whole screen jump as a fleet scales."""
        line1 = self.who()
        connection = self.connection.text()
        if 0 < width < line1.cell_len + connection.cell_len:
            connection = self.connection.text(short=True)
        line1.append_text(connection)
        counts = self.counts.text()
        line2 = self.place.text()
        room = max(counts.cell_len, COUNTS_ROOM)
        if width <= 0 or line1.cell_len + 3 + room <= width:
            return [Text.assemble(line1, " · ", counts), line2]
        return [line1, counts, line2]


class GatewayHeader(Static):
    DEFAULT_CSS = """
    GatewayHeader {
        height: auto; background: $panel; padding: 0 1;
        text-wrap: nowrap; text-overflow: ellipsis;
    }
    """

    # Always: equal states can differ in style (a Text's base style is not part of its
    # equality); `show` compares what is drawn and writes only what changed.
    state: reactive[HeaderState | None] = reactive(None, repaint=False, always_update=True)

    def watch_state(self) -> None:
        self._draw()

    def on_resize(self, event: events.Resize) -> None:
        """The lines reflow with the width (the counts take a line of their own when narrow)."""
        self._draw()

    def _draw(self) -> None:
        if self.state is None:
            return
        width = (self.size.width or self.app.size.width) - 2  # the padding
        self.show(*self.state.lines(width))

    def show(self, *lines: Text) -> None:
        """Update only when the text changed: an idle panel writes nothing."""
        text = Text("\n").join(lines)
        text.no_wrap = True
        text.overflow = "ellipsis"
        if text.plain != getattr(self, "_plain", None) or text.spans != getattr(
            self, "_spans", None
        ):
            self._plain, self._spans = text.plain, list(text.spans)
            self.update(text)
