"""How a worker's GPUs read in a table cell and in its details (from `WorkerSnapshot.gpus`).

A worker without GPU stats (no GPU, no NVML, an older worker) shows `-`, and sorts last."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

Gpus = Sequence[Mapping[str, Any]] | None


def gpu_totals(gpus: Gpus) -> tuple[float | None, int | None, int | None]:
    """(mean utilisation %, memory used MB, memory total MB) over the worker's GPUs; None
    for what no GPU reported."""
    if not gpus:
        return None, None, None
    utils = [float(g["util_percent"]) for g in gpus if g.get("util_percent") is not None]
    used = [int(g["mem_used_mb"]) for g in gpus if g.get("mem_used_mb") is not None]
    total = [int(g["mem_total_mb"]) for g in gpus if g.get("mem_total_mb") is not None]
    return (
        sum(utils) / len(utils) if utils else None,
        sum(used) if used else None,
        sum(total) if total else None,
    )


def _gb(mb: int) -> str:
    gb = mb / 1024
    return f"{gb:.0f}" if gb >= 10 else f"{gb:.1f}"


def gpu_util_text(gpus: Gpus) -> Text:
    util = gpu_totals(gpus)[0]
    if util is None:
        return Text("-", "dim")
    return Text(f"{util:.0f}%", "bold" if util >= 90 else "")


def gpu_mem_text(gpus: Gpus) -> Text:
    """`152/160G`: used / total memory of all the worker's GPUs; bold at 95 % full."""
    _, used, total = gpu_totals(gpus)
    if used is None:
        return Text("-", "dim")
    if not total:
        return Text(f"{_gb(used)}G")
    style = "bold" if used >= 0.95 * total else ""
    return Text(f"{_gb(used)}/{_gb(total)}G", style)


def gpu_table(gpus: Gpus) -> Table | None:
    """One row per GPU for the worker's details, or None without GPU stats."""
    if not gpus:
        return None
    table = Table(title=f"GPUs ({len(gpus)})", title_justify="left", box=None, expand=False)
    for column in ("#", "name", "util", "memory", "temp", "power"):
        table.add_column(column, justify="left" if column == "name" else "right")
    for gpu in gpus:
        used, total = gpu.get("mem_used_mb"), gpu.get("mem_total_mb")
        memory = (
            f"{_gb(used)}/{_gb(total)} GB" if used is not None and total else
            f"{_gb(used)} GB" if used is not None else "-"
        )  # fmt: skip
        util = gpu.get("util_percent")
        temp = gpu.get("temperature_c")
        power, limit = gpu.get("power_w"), gpu.get("power_limit_w")
        watts = "-" if power is None else f"{power:.0f} W" + (f" / {limit:.0f}" if limit else "")
        table.add_row(
            str(gpu.get("index", "")),
            Text(str(gpu.get("name") or "-")),
            "-" if util is None else f"{util:.0f}%",
            memory,
            "-" if temp is None else f"{temp:.0f}°C",
            watts,
        )
    return table
