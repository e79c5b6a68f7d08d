"""Shared fixtures: real gateways on loopback ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from gateway_harness import RunningGateway
from gatewaytui.gateway.config import GatewayConfig


@pytest.fixture
def make_gateway() -> Iterator[Callable[..., RunningGateway]]:
    """Start gateways with option overrides named `plugin__arg` (e.g. `llm__queue_size=2`)."""
    started: list[RunningGateway] = []

    def start(**overrides: object) -> RunningGateway:
        running = RunningGateway(GatewayConfig.build(**overrides))
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def gateway(make_gateway: Callable[..., RunningGateway]) -> RunningGateway:
    return make_gateway()
