"""One benchmark figure with the conditions that produced it, printed as a table or JSON."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

__all__ = ["Figure", "machine_description", "render_json", "render_table"]


@dataclass(frozen=True, slots=True)
class Figure:
    benchmark: str
    name: str
    value: float
    unit: str
    #: The target of DESIGN.md §9, as text (e.g. ">= 10 x real time"), or "".
    target: str = ""
    met: bool | None = None
    #: The physical limit measured in the same run, when there is one.
    limit: float | None = None
    conditions: dict[str, object] = field(default_factory=dict)


def machine_description() -> dict[str, object]:
    pages = os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 0
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(pages * page / 2**30, 1) if pages and page else None,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "date": datetime.now(tz=UTC).strftime("%Y-%m-%d"),
    }


def _fmt(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def render_table(figures: Sequence[Figure]) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="andon bench")
    for column in ("benchmark", "figure", "value", "unit", "target", "met", "limit", "conditions"):
        table.add_column(column)
    for f in figures:
        table.add_row(
            f.benchmark,
            f.name,
            _fmt(f.value),
            f.unit,
            f.target,
            "" if f.met is None else ("yes" if f.met else "NO"),
            "" if f.limit is None else _fmt(f.limit),
            ", ".join(f"{k}={v}" for k, v in f.conditions.items()),
        )
    console = Console(width=200, record=True)
    with console.capture() as capture:
        console.print(table)
        console.print(f"machine: {machine_description()}")
    return capture.get()


def render_json(figures: Sequence[Figure]) -> str:
    return json.dumps(
        {"machine": machine_description(), "figures": [asdict(f) for f in figures]}, indent=1
    )
