"""Bodies of the operator API and the OpenAI-format error envelope."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from gatewaytui.schema.protocol import LogLine
from gatewaytui.schema.wire import WireModel


class ErrorDetail(WireModel):
    message: str
    type: str = "server_error"
    code: str | None = None
    param: str | None = None


class ErrorBody(WireModel):
    """OpenAI's error envelope, used by every endpoint so clients parse one shape."""

    error: ErrorDetail


class ActionResult(WireModel):
    """What an operator action returns."""

    ok: bool = True
    message: str = ""
    target: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class ServerDrainRequest(WireModel):
    timeout_s: float | None = Field(default=None, gt=0)
    exit_when_done: bool = False
    scope: Literal["replica", "fleet"] = Field(
        default="replica",
        description="In a fleet: drain this replica (or `replica`) only, or every replica.",
    )
    replica: str | None = Field(
        default=None, description="In a fleet: the replica to drain (default: this one)."
    )


class ServerUndrainRequest(WireModel):
    scope: Literal["replica", "fleet"] = "replica"
    replica: str | None = None


class WorkerLogs(WireModel):
    """`GET /api/workers/{id}/logs`: the worker's last lines (one batch of a followed stream
    has the same `lines` / `dropped`)."""

    worker_id: str = ""
    lines: list[LogLine] = Field(default_factory=list)
    dropped: int = Field(default=0, ge=0, description="Lines lost because a reader fell behind.")
