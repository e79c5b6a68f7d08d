"""What the backends need from the rest of the gateway (its own module, so that the
backends' parts can name it without importing their owner)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gatewaytui.gateway.config import GatewayConfig
from gatewaytui.gateway.events import EventLog
from gatewaytui.gateway.hub import StateHub
from gatewaytui.gateway.registry import WorkerRecord
from gatewaytui.gateway.scheduler import Scheduler


@dataclass(frozen=True)
class BackendHost:
    """What the backends need from the rest of the gateway, and nothing more."""

    config: GatewayConfig
    hub: StateHub
    events: EventLog
    scheduler: Scheduler
    worker_knows_model: Callable[[str], bool]  # a connected worker serves it
    worker_frame: Callable[[WorkerRecord, Any], None]  # a backend's answer, as a worker's
    touch_worker: Callable[[WorkerRecord], None]  # its row, capacity and readiness changed
    pump_queue: Callable[[], None]  # slots freed up: hand them to waiters
