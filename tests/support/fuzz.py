"""What the OpenAPI fuzz tests share: one set of hypothesis settings (seeded, no example
database, no deadline on a busy machine, every health check off: schemathesis' strategies
trip them by design) and the one rule every generated call is held to."""

from __future__ import annotations

from collections import Counter
from typing import Any

import requests
from hypothesis import HealthCheck, settings


def fuzz_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


def call_checked(
    case: Any,
    base_url: str,
    session: requests.Session,
    timeout: float,
    statuses: Counter[int],
    failures: list[str],
) -> requests.Response | None:
    """Call a generated case; a 500, an error without a body or a broken connection is a
    failure (noted in `failures`). None when the call itself failed."""
    label = f"{case.method} {case.formatted_path}"
    try:
        response: requests.Response = case.call(base_url=base_url, session=session, timeout=timeout)
    except requests.RequestException as exc:
        failures.append(f"{label}: {exc!r}")
        return None
    statuses[response.status_code] += 1
    empty = not response.content.strip() and response.status_code >= 400
    if response.status_code == 500 or empty:
        failures.append(f"{label} -> {response.status_code}: {response.text[:200]}")
    return response
