"""Failed requests as events, aggregated: a storm of 1,000 failures is a few lines.

The first failure of a kind (model x status x outcome) in a quiet window is reported at once
with its message; the ones after it are counted and reported as one line per kind when the
window closes: "412 requests for llama3:70b got 503 no_capacity in the last 10 s".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

# Outcomes that are the gateway's or an upstream's failure (a client leaving, an operator's
# cancel or a malformed request are not failures to page anyone about).
FAILURES = frozenset(
    {"timeout", "queue_timeout", "no_capacity", "rejected", "upstream_error", "error"}
)
WINDOW_S = 10.0

# (kind, message, level) -> the gateway's event log
Emit = Callable[[str, str, str], None]


@dataclass
class _Bucket:
    first_at: float
    count: int = 0  # failures after the first, not yet reported
    workers: set[str] = field(default_factory=set)
    last_error: str | None = None


class FailureEvents:
    """Fed on the event loop at every failed request; `flush` runs every few seconds."""

    def __init__(self, emit: Emit, window_s: float = WINDOW_S) -> None:
        self._emit = emit
        self.window_s = window_s
        self._open: dict[tuple[str, int | None, str], _Bucket] = {}

    def failed(
        self,
        model: str,
        status: int | None,
        outcome: str,
        error: str | None,
        worker: str | None = None,
        now: float | None = None,
    ) -> None:
        if outcome not in FAILURES:
            return
        now = time.monotonic() if now is None else now
        key = (model, status, outcome)
        bucket = self._open.get(key)
        if bucket is None:
            self._open[key] = _Bucket(first_at=now)
            where = f" on {worker}" if worker else ""
            why = f": {error}" if error else ""
            self._emit(
                _kind(outcome),
                f"request for {model} got {status or '-'} {outcome}{where}{why}"[:500],
                "warning" if outcome in ("rejected", "queue_timeout") else "error",
            )
            return
        bucket.count += 1
        bucket.last_error = error
        if worker:
            bucket.workers.add(worker)

    def flush(self, now: float | None = None) -> None:
        """Report and close the windows older than `window_s`."""
        now = time.monotonic() if now is None else now
        for key, bucket in list(self._open.items()):
            age = now - bucket.first_at
            if age < self.window_s:
                continue
            del self._open[key]
            if not bucket.count:
                continue
            model, status, outcome = key
            plural = "s" if bucket.count != 1 else ""
            on = ""
            if bucket.workers:
                names = sorted(bucket.workers)
                on = f" on {', '.join(names[:3])}" + (
                    f" +{len(names) - 3}" if len(names) > 3 else ""
                )
            why = f" (last: {bucket.last_error})" if bucket.last_error else ""
            self._emit(
                _kind(outcome),
                f"{bucket.count} more request{plural} for {model} got {status or '-'} {outcome}"
                f"{on} in the last {age:.0f} s{why}"[:500],
                "error",
            )


def _kind(outcome: str) -> str:
    return {
        "queue_timeout": "queue_timeout",
        "no_capacity": "no_capacity",
        "rejected": "rejected",
        "timeout": "request_timeout",
    }.get(outcome, "request_failed")
