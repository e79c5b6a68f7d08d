"""Every frame the panel composes, as an operator would have seen it: what the header says and
which rows the Workers table holds, so a test can judge each frame, not just the end state."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from gatewaytui.client.connection import ConnectionStatus
from gatewaytui.tui.app import GatewayApp
from gatewaytui.tui.formatting import SERVING_STATUSES

COUNTS = re.compile(r"workers (\d+)/(\d+)")


@dataclass(frozen=True)
class Frame:
    at: float  # monotonic
    status: ConnectionStatus
    header: str
    rows: frozenset[str]
    serving_rows: int
    view: str  # the view shown


class FrameLog:
    """Every composed frame (`App._display` with an update, outside a batch), as drawn."""

    def __init__(self, app: GatewayApp) -> None:
        self.frames: list[Frame] = []
        self._app = app
        display = app._display

        def recorded(screen: Any, renderable: Any) -> None:
            if renderable is not None and not app._batch_count:
                self.frames.append(self.now())
            display(screen, renderable)

        app._display = recorded  # type: ignore[method-assign]

    def now(self) -> Frame:
        """What a frame composed now would show."""
        app = self._app
        table = app.query_one("#workers-table")
        ids = table.visible_ids
        serving = sum(1 for i in ids if (table.get_row(i) or {}).get("status") in SERVING_STATUSES)
        header = getattr(app.chrome.header, "_plain", "")
        return Frame(
            time.monotonic(),
            app.session.state.status,
            header,
            frozenset(ids),
            serving,
            app.current_view.view_id,
        )

    def since(self, t: float) -> list[Frame]:
        return [f for f in self.frames if f.at >= t]


def whole(frame: Frame) -> bool:
    """The header's `workers S/N` agrees with the rows drawn in the same frame (judged while
    the Workers view is shown, unfiltered: a hidden view is redrawn when it is shown)."""
    found = COUNTS.search(frame.header)
    if found is None or frame.view != "workers":
        return True  # no counts drawn yet, or no worker rows on screen
    serving, total = int(found[1]), int(found[2])
    return total == len(frame.rows) and serving == frame.serving_rows


def assert_whole(log: FrameLog) -> None:
    """Every frame drawn is whole, and at least one of them showed worker rows to judge."""
    judged = [f for f in log.frames if f.view == "workers" and COUNTS.search(f.header)]
    assert judged, log.frames
    assert all(whole(f) for f in log.frames), log.frames
