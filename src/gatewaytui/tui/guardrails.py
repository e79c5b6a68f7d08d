"""What a drain leaves each model with, so the last ready capacity is never one `y` away.

`drain_impact` counts, per model the chosen workers serve, the ready workers (and ready
backends) left after the drain and what is queued for it; a model the drain leaves with nothing
ready (`ModelImpact.strands`) makes the dialog ask for that model's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gatewaytui.shared.text import plural

__all__ = ["SERVING", "ModelImpact", "drain_impact", "plural"]

SERVING = frozenset({"connected", "idle", "working"})


@dataclass(frozen=True)
class ModelImpact:
    model: str
    ready_now: int  # workers
    ready_after: int
    workers: int  # listed workers of the model
    ready_backends: int
    queued: int

    @property
    def left_without(self) -> bool:
        return self.ready_after == 0 and self.ready_backends == 0

    @property
    def strands(self) -> bool:
        """This drain takes the model's last ready capacity (not: it had none already)."""
        return self.left_without and self.ready_now > 0

    def line(self) -> str:
        """`llama3.1:70b: 0 of 2 workers ready after this, 8 queued`."""
        text = (
            f"{self.model}: {self.ready_after} of {plural(self.workers, 'worker')} ready after this"
        )
        if self.ready_backends:
            text += f" (+{plural(self.ready_backends, 'ready backend')})"
        return f"{text}, {self.queued} queued"


def drain_impact(
    worker_ids: list[str],
    workers: Mapping[str, Mapping[str, Any]],
    models: Mapping[str, Mapping[str, Any]],
) -> list[ModelImpact]:
    """Per model served by the chosen workers: what is left ready once they are drained."""
    chosen = [workers[w] for w in worker_ids if w in workers]
    served = sorted({m for w in chosen for m in (w.get("models") or ())})
    impacts = []
    for model in served:
        summary = models.get(model) or {}
        leaving = sum(
            1 for w in chosen if w.get("status") in SERVING and model in (w.get("models") or ())
        )
        ready_now = int(summary.get("ready_workers", 0))
        impacts.append(
            ModelImpact(
                model=model,
                ready_now=ready_now,
                ready_after=max(ready_now - leaving, 0),
                workers=int(summary.get("workers", 0)),
                ready_backends=int(summary.get("ready_backends", 0)),
                queued=int(summary.get("queued", 0)),
            )
        )
    return impacts
