"""Log lines that a flood of bad peers cannot multiply: at most a few per key per window.

`RateLimitFilter` sits on the loggers that peers can make talk (asyncio's accept errors
near the file-descriptor limit, uvicorn's protocol errors, our own HTTP guard): the first
`burst` records of a kind in each `window` seconds pass, the rest are counted and the next
record that passes says how many were dropped. Repeats also lose their traceback: the first
one of a window shows it, the rest are one line.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from gatewaytui.shared.text import plural

ACCEPT_ERROR = "socket.accept() out of system resource"  # asyncio's message (EMFILE, ENFILE)
DEFAULT_BURST = 5
DEFAULT_WINDOW_S = 10.0
FLOODABLE_LOGGERS = ("asyncio", "uvicorn.error", "uvicorn.protocols", "gatewaytui.gateway.http")


class RateLimitFilter(logging.Filter):
    def __init__(self, burst: int = DEFAULT_BURST, window: float = DEFAULT_WINDOW_S) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self._seen: dict[tuple[str, str], list[float]] = {}  # key -> [window start, count]
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "asyncio" and str(record.msg).startswith(ACCEPT_ERROR):
            record.exc_info = None  # EMFILE at accept: asyncio retries; a line says enough
            record.exc_text = None
        key = (record.name, str(getattr(record, "limit_key", record.msg)))
        now = time.monotonic()
        slot = self._seen.get(key)
        if slot is None or now - slot[0] >= self.window:
            dropped = int(slot[2]) if slot is not None else 0
            if len(self._seen) > 1024:  # bounded whatever the keys
                self._seen.clear()
            self._seen[key] = [now, 1, 0]
            if dropped:
                record.msg = f"{record.msg} ({plural(dropped, 'similar line')} suppressed)"
            return True
        slot[1] += 1
        if slot[1] > self.burst:
            slot[2] += 1
            self.dropped += 1
            return False
        if slot[1] > 1:
            record.exc_info = None  # a repeat: one line, not another traceback
            record.exc_text = None
        return True


_installed: RateLimitFilter | None = None


def install(names: tuple[str, ...] = FLOODABLE_LOGGERS) -> RateLimitFilter:
    """Put one shared filter on the loggers a flood can reach (idempotent)."""
    global _installed
    if _installed is None:
        _installed = RateLimitFilter()
    for name in names:
        logger = logging.getLogger(name)
        if _installed not in logger.filters:
            logger.addFilter(_installed)
    return _installed


class RateLimitedLog:
    """A logger whose calls carry an explicit key (e.g. per path), rate limited by key."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.filter = RateLimitFilter()
        logger.addFilter(self.filter)

    def warning(self, key: str, msg: str, *args: Any) -> None:
        self.logger.warning(msg, *args, extra={"limit_key": key})

    def info(self, key: str, msg: str, *args: Any) -> None:
        self.logger.info(msg, *args, extra={"limit_key": key})
