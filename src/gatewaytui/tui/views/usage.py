"""Usage: requests, errors, latency and tokens by model, key, worker or backend over a
window, from the ledger's rollups (`GET /api/history/usage` and `/series`).

`w` cycles the window (15m, 1h, 24h, 7d), `b` what the rows are grouped by; the line above
the table draws the window's requests and errors per minute (per hour for 24h and 7d). An
opened snapshot shows the usage it was saved with (one window, each grouping).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Static

from gatewaytui.client.errors import ActionError, ClientError
from gatewaytui.client.store import Change, StateStore
from gatewaytui.schema.history import SnapshotHistory, UsageReport, UsageSeries
from gatewaytui.tui.formatting import coarse_age
from gatewaytui.tui.views.base import register_view
from gatewaytui.tui.views.history import coverage_text, ms_column, saved_clock
from gatewaytui.tui.views.table_view import TableView, numeric_column
from gatewaytui.tui.widgets.virtual_table import Column

WINDOWS = ("15m", "1h", "24h", "7d")
GROUPS = ("model", "key", "worker", "backend")
REFRESH_EVERY_S = 10
BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int) -> str:
    """The last `width` values as block characters scaled to their maximum."""
    values = list(values)[-width:]
    top = max(values, default=0)
    if top <= 0:
        return BLOCKS[0] * len(values)
    return "".join(
        BLOCKS[min(int(v / top * (len(BLOCKS) - 1) + 0.5), len(BLOCKS) - 1)] for v in values
    )


def filled(series: UsageSeries, name: str) -> list[float]:
    """One value per step of the window (steps with no traffic are 0, not skipped)."""
    step = series.step_s
    by_t = {int(p.t): float(getattr(p, name)) for p in series.points}
    first = int(series.start // step * step)
    return [by_t.get(t, 0.0) for t in range(first, int(series.end) + 1, step)]


def covered_note(report: UsageReport) -> str:
    """Say so when the rates are over less than the window (REQ/S divides by the time the
    ledger has been recording, not by 24 h of which it saw 2 minutes)."""
    covered = report.covered_s
    if covered is None or covered >= report.end - report.start - 1:
        return ""
    return f", rates over the last {coarse_age(covered)} (the ledger's age)"


def rate_text(per_s: float) -> str:
    """Requests per second in 7 columns; a quiet model reads `<0.01`, not as idle (`0.00`)."""
    if per_s <= 0:
        return "0"
    return "<0.01" if per_s < 0.01 else f"{per_s:.2f}"


def _pct(value: Any) -> str:
    return f"{float(value) * 100:.1f}%" if value else "0%"


@register_view("9")
class UsageView(TableView):
    view_id = "usage"
    title = "Usage"
    default_sort = ("requests", True)

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("w", "cycle_window", "Window", id="usage.window", tooltip="usage: next window"),
        Binding("b", "cycle_group", "Group by", id="usage.group", tooltip="usage: group by next"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.window = "1h"
        self.group = "model"
        self._rows: dict[str, dict[str, Any]] = {}
        self._series: UsageSeries | None = None
        self._note: Text | None = None
        self._coverage: Text | None = None
        self._span = ""  # ", rates over the last 2m (the ledger's age)" for a young ledger
        self._since_refresh = REFRESH_EVERY_S
        self._saved_at: float | None = None  # shown from an opened snapshot, saved then

    def compose(self) -> ComposeResult:
        yield Static("", id="usage-spark")
        yield from super().compose()

    def columns(self) -> Sequence[Column]:
        return [
            Column("group", "GROUP", lambda r: self._group_label(r.get("group")), width=18),
            Column(
                "rate",
                "REQ/S",
                lambda r: rate_text(r.get("request_rate") or 0),
                sort_key=lambda r: r.get("request_rate") or 0,
                width=7,
                align="right",
            ),
            numeric_column("requests", "REQS", width=8, priority=3),
            Column(
                "errors",
                "ERR%",
                lambda r: _pct(r.get("error_rate")),
                sort_key=lambda r: r.get("error_rate") or 0,
                width=6,
                align="right",
            ),
            ms_column("latency_p50_ms", "P50", 0),
            ms_column("latency_p95_ms", "P95", 0),
            ms_column("ttft_p50_ms", "TTFT50", 2),
            ms_column("ttft_p95_ms", "TTFT95", 2),
            numeric_column("tokens_in", "TOK IN", width=9, priority=4),
            numeric_column("tokens_out", "TOK OUT", width=9, priority=4),
        ]

    def rows(self, store: StateStore) -> Mapping[str, Mapping[str, Any]]:
        return self._rows

    def show_state(self, store: StateStore, change: Change | None) -> None:
        if change is None:
            self.table.set_rows(self._rows)
            self.refresh_usage()

    def tick(self) -> None:
        super().tick()
        self._since_refresh += 1
        live = self.panel.session.client is not None  # a snapshot's history never changes
        if live and self._since_refresh >= REFRESH_EVERY_S:
            self.refresh_usage()

    def header_hint(self) -> Text | None:
        what = f"by {self.group} over {self.window}{self._span}"
        if self._saved_at is not None:
            keys = f"saved in the snapshot at {saved_clock(self._saved_at)} (b: group by)"
        else:
            keys = "(w: window, b: group by)"
        base = Text(f"{what} {keys}", "dim")
        if self._note is not None:
            return Text.assemble(self._note, "  ", base)
        if self._coverage is not None:
            return Text.assemble(self._coverage, " ", base)
        return base

    def action_cycle_window(self) -> None:
        self.window = WINDOWS[(WINDOWS.index(self.window) + 1) % len(WINDOWS)]
        self.refresh_usage()

    def action_cycle_group(self) -> None:
        self.group = GROUPS[(GROUPS.index(self.group) + 1) % len(GROUPS)]
        self.refresh_usage()

    def refresh_usage(self) -> None:
        self._since_refresh = 0
        session = self.panel.session
        if session.is_offline or session.client is None:
            self._show_saved(self.panel.store.saved_history)
            return
        self._fetch()

    def _show_saved(self, saved: SnapshotHistory | None) -> None:
        """The usage an opened snapshot carries: one window, each grouping."""
        report = None
        if saved is not None:
            self.window = saved.window  # the only window it holds
            self._saved_at = saved.saved_at
            self._series = saved.series
            report = next((r for r in saved.usage if r.group_by == self.group), None)
        if report is not None:
            self._show_report(report)
        else:
            held = "no usage history" if saved is None else f"no usage by {self.group}"
            self._note = Text(f"this snapshot holds {held}", "yellow")
        self._draw_spark()
        self._changed()

    def _show_report(self, report: UsageReport) -> None:
        self._note = None
        self._rows = {row.group or "(none)": row.model_dump() for row in report.rows}
        self._coverage = coverage_text(report)
        self._span = covered_note(report)
        self.table.set_rows(self._rows)

    @work(exclusive=True, group="usage")
    async def _fetch(self) -> None:
        client = self.panel.session.client
        if client is None:
            return
        try:
            report = await client.history.usage(self.group, self.window)
            self._series = await client.history.series(self.window)
        except ActionError as exc:
            self._note = Text(f"usage: {exc.message}", "yellow")
        except ClientError as exc:
            self._note = Text(f"usage unavailable: {exc}", "yellow")
        else:
            self._saved_at = None
            self._show_report(report)
        self._draw_spark()
        self._changed()

    def _group_label(self, group: str | None) -> str:
        """A row without a worker (served by a backend, or refused before one was chosen),
        without a key or a backend, named for what it lacks: `(none)` read as one thing."""
        return group or f"(no {self.group})"

    def on_resize(self) -> None:
        self._draw_spark()  # the line is as wide as the view (first drawn before layout)

    def _draw_spark(self) -> None:
        spark = self.query_one("#usage-spark", Static)
        series = self._series
        if series is None or self._note is not None:
            spark.update(self._note or Text("reading usage…", "dim"))
            return
        width = max(self.size.width - 40, 10)
        per = "hour" if series.step_s == 3600 else "minute"
        requests, errors = filled(series, "requests"), filled(series, "errors")
        spark.update(
            Text.assemble(
                (f"requests/{per} ", "bold"),
                (sparkline(requests, width), "green"),
                f" {int(sum(requests))} in {self.window}\n",  # a total: not a rate
                (f"errors/{per}   ", "bold"),
                (sparkline(errors, width), "red"),
                f" {int(sum(errors))} in {self.window}",
            )
        )

    def _changed(self) -> None:
        from gatewaytui.tui.messages import PanelStateChanged

        self.post_message(PanelStateChanged())
