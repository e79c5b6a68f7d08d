"""Retry delays: capped exponential backoff with full jitter, for every reconnect loop (the
panel's state stream, workers and MCP relays dialling out, an MCP server's restarts). Each
caller picks its own cap (the panel 10 s, workers `backoff.cap_s`). A caller that must notice
a short outage's end quickly (the panel: an operator is watching) can hold the first few
attempts to a lower ceiling (`early_cap_s` for `early_attempts`), before the ceiling grows.

Full jitter (a uniform draw between 0 and the exponential ceiling) keeps thousands of workers
that lost the same gateway from reconnecting in lock-step when it comes back.
"""

from __future__ import annotations

import random


class Backoff:
    """Delay before the n-th consecutive retry: uniform(0, min(cap, base * 2**n)).

    Either let it count (`next_delay()`, `reset()`) or pass the attempt (`delay(n)`).
    """

    def __init__(
        self,
        base_s: float,
        cap_s: float,
        rng: random.Random | None = None,
        *,
        early_cap_s: float | None = None,
        early_attempts: int = 0,
    ) -> None:
        if base_s <= 0 or cap_s <= 0 or (early_cap_s is not None and early_cap_s <= 0):
            raise ValueError("backoff base and caps must be positive")
        self.base_s = base_s
        self.cap_s = cap_s
        self.early_cap_s = early_cap_s
        self.early_attempts = early_attempts
        self.attempt = 0
        self._rng = rng or random.Random()

    def ceiling(self, attempt: int | None = None) -> float:
        """The upper bound of the delay for `attempt` (by default the next one counted)."""
        n = self.attempt if attempt is None else attempt
        cap = self.cap_s
        if self.early_cap_s is not None and n < self.early_attempts:
            cap = min(cap, self.early_cap_s)
        # Clamp the exponent: 2**64 * base is already far past any sane cap.
        return float(min(cap, self.base_s * 2 ** min(n, 64)))

    def delay(self, attempt: int) -> float:
        """A delay for the given attempt, without counting."""
        return self._rng.uniform(0, self.ceiling(attempt))

    def next_delay(self) -> float:
        """Draw the next delay and count the attempt."""
        delay = self.delay(self.attempt)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """Back to the base ceiling, after a connection proved stable."""
        self.attempt = 0
