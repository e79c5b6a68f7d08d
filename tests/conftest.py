"""Shared fixtures: real gateways on loopback ports."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator

import pytest

from gatewaytui.gateway.config import GatewayConfig
from support.gateway_harness import RunningGateway, SimFleet

# `gatewaytui serve` run by tests (subprocesses) keeps no ledger file in the working directory
# unless a test asks for one (a flag or YAML value wins over this).
os.environ.setdefault("HISTORY_ENABLED", "false")
# The generated operator token (issue 11) goes to a scratch state dir, never the user's: a
# `gatewaytui serve`/`demo` run by a test writes it there and local clients read it there.
os.environ.setdefault("XDG_STATE_HOME", tempfile.mkdtemp(prefix="gatewaytui-test-state-"))


@pytest.fixture
def make_gateway() -> Iterator[Callable[..., RunningGateway]]:
    """Start gateways with option overrides named `plugin__arg` (e.g. `llm__queue_size=2`)."""
    started: list[RunningGateway] = []

    def start(**overrides: object) -> RunningGateway:
        open_default = "server__open" not in overrides
        running = RunningGateway(GatewayConfig.build(**overrides), open_default=open_default)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def gateway(make_gateway: Callable[..., RunningGateway]) -> RunningGateway:
    return make_gateway()


@pytest.fixture
def sim_workers() -> Iterator[Callable[..., SimFleet]]:
    """Start shipped simulated workers against a RunningGateway; stopped (drained) after."""
    from gatewaytui.workers.settings import SimulateSettings, WorkerSettings

    fleets: list[SimFleet] = []

    def start(gw: RunningGateway, *, simulate: dict | None = None, **settings: object) -> SimFleet:
        simulate = {
            "latency_s": 0.01,
            "tokens_per_second": 0,
            "embedding_dim": 8,
            **(simulate or {}),
        }
        worker_settings = WorkerSettings(
            gateway_url=gw.ws_url,
            simulate=SimulateSettings(**simulate),
            **{"drain_timeout_s": 5, **settings},
        )
        fleet = SimFleet(gw, worker_settings)
        fleets.append(fleet)
        return fleet

    yield start
    for fleet in fleets:
        fleet.stop()
