"""What views and screens may use of the panel, without importing the app.

`PanelContext` is the app as a view sees it: the store and session of the current context,
the clock, the theme's status styles, and the actions. `panel_of(widget)` returns it; the
app module checks that `GatewayApp` provides it.
"""

from __future__ import annotations

from typing import Literal, Protocol, cast

from textual.dom import DOMNode

from gatewaytui.client.session import Session
from gatewaytui.client.store import StateStore
from gatewaytui.tui.config import TuiConfig
from gatewaytui.tui.widgets.virtual_table import VirtualTable


class Actions(Protocol):
    """The operator's actions as views and screens call them (`actions.PanelActions`)."""

    def refuse_read_only(self) -> bool:
        """True (and say why) when no action may be taken now."""
        ...

    def request_worker_action(
        self,
        kind: Literal["drain", "undrain"],
        worker_ids: list[str],
        table: VirtualTable | None = None,
    ) -> None: ...

    def request_cancel_job(self, job_id: str) -> None: ...


class PanelContext(Protocol):
    @property
    def session(self) -> Session: ...
    @property
    def store(self) -> StateStore: ...
    @property
    def read_only(self) -> bool:
        """Actions are hidden and refused (snapshot, viewer token, --read-only, the server)."""
        ...

    @property
    def can_act(self) -> bool:
        """Not read-only and live."""
        ...

    @property
    def status_styles(self) -> dict[str, str]:
        """Status word -> Rich style from the theme; updated in place on a theme change."""
        ...

    @property
    def heartbeat_stale_after(self) -> float:
        """When a worker's heartbeat is stale: twice the gateway's interval."""
        ...

    @property
    def actions(self) -> Actions: ...

    @property
    def config(self) -> TuiConfig:
        """The panel's config file (alert thresholds, keymap, ...)."""
        ...

    def now(self) -> float:
        """Wall-clock now; for an offline snapshot, the moment it was taken."""
        ...

    def clock(self) -> float:
        """`now()` in whole seconds, advanced once a second (ages tick together)."""
        ...


def panel_of(node: DOMNode) -> PanelContext:
    """The panel `node` is mounted in."""
    return cast(PanelContext, node.app)
