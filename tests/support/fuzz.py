"""One set of hypothesis settings for the OpenAPI fuzz tests: seeded (derandomized), no
example database, no deadline (a busy machine), every health check off (schemathesis'
strategies trip them by design)."""

from __future__ import annotations

from hypothesis import HealthCheck, settings


def fuzz_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
