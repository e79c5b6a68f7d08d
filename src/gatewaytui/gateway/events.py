"""The gateway's bounded event log: connects, disconnects, evictions, drains, errors."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from gatewaytui.gateway.clock import iso_now

log = logging.getLogger("gatewaytui.gateway.events")

_LOG_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class EventLog:
    """Keeps the last `size` events as wire-ready dicts and tells the state hub of each."""

    def __init__(self, size: int, on_event: Callable[[dict[str, Any]], None] | None = None):
        self._events: deque[dict[str, Any]] = deque(maxlen=max(size, 1))
        self._next_id = 1
        self._on_event = on_event
        # Set by the fleet (gateway/cluster): this replica's events also go to the fleet log.
        self.on_local: Callable[[dict[str, Any]], None] | None = None

    def add(
        self,
        kind: str,
        message: str,
        *,
        level: str = "info",
        worker_id: str | None = None,
        job_id: str | None = None,
    ) -> dict[str, Any]:
        event = {
            "id": self._next_id,
            "ts": iso_now(),
            "kind": kind,
            "level": level,
            "message": message,
            "worker_id": worker_id,
            "job_id": job_id,
        }
        self._next_id += 1
        self._events.append(event)
        if self.on_local is not None:
            self.on_local(event)
        log.log(_LOG_LEVELS.get(level, logging.INFO), "%s: %s", kind, message)
        if self._on_event is not None:
            self._on_event(event)
        return event

    def append_remote(self, event: dict[str, Any]) -> dict[str, Any]:
        """Add an event another fleet replica recorded (it keeps its `replica`), numbered in
        this log's sequence; not logged again here."""
        event = {**event, "id": self._next_id}
        self._next_id += 1
        self._events.append(event)
        if self._on_event is not None:
            self._on_event(event)
        return event

    def all(self) -> list[dict[str, Any]]:
        return list(self._events)
