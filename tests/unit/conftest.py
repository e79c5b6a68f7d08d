"""tests/unit is the fast subset the README names: pure functions and models, no servers.
A test here that asks for a served gateway is moved to its area's folder instead."""

from __future__ import annotations

from pathlib import Path

import pytest

SERVER_FIXTURES = {"make_gateway", "gateway", "sim_workers"}
HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            served = SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ()))
            if served:
                raise pytest.UsageError(
                    f"{item.nodeid} uses {sorted(served)}: unit tests start no server; "
                    "move it to tests/gateway (or its area's folder)"
                )
