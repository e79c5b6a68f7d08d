"""The panel's banner warns when the gateway replica it watches lost its Redis link."""

from __future__ import annotations

from gatewaytui.client.connection import ConnectionState, ConnectionStatus
from gatewaytui.tui.widgets.banner import BannerState


def _live() -> ConnectionState:
    return ConnectionState(ConnectionStatus.LIVE, since=0.0)


def test_degraded_replica_gets_a_warning_banner() -> None:
    banner = BannerState(_live(), "prod", "http://gw:8080", cluster="degraded", replica="r2")
    text, error = banner.message()
    assert text is not None and not error
    assert "Fleet degraded" in text.plain and "replica 'r2'" in text.plain


def test_healthy_fleet_and_single_node_show_no_banner() -> None:
    for cluster in ("ok", "off"):
        assert BannerState(_live(), "prod", "http://gw", cluster=cluster).message() == (None, False)
