"""``andon edge status``: read an edge's spool and status file without disturbing the agent."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from andon.edge.spool import StoreAndForwardSpool
from andon.testing.clock import SystemClock

__all__ = ["read_edge_status", "status_path_for", "write_status_file"]


def status_path_for(spool_path: Path) -> Path:
    return spool_path.with_name(spool_path.name + ".status.json")


def write_status_file(path: Path, status: dict[str, object]) -> None:
    """Replace the status file atomically, so a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(status, default=str, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def _iso(ts_ms: int | None) -> str:
    if not ts_ms:
        return "-"
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat(timespec="seconds")


def read_edge_status(spool_path: Path) -> dict[str, object]:
    if not spool_path.exists():
        raise ValueError(f"no spool at {spool_path} (has this edge run yet?)")
    # Limits high enough that opening the spool to read it never drops anything.
    with StoreAndForwardSpool(
        spool_path, clock=SystemClock(), max_bytes=2**62, max_age_s=1e12
    ) as spool:
        stats = spool.stats()
        bd_seq = spool.get_int("bd_seq")
        fence = spool.get_int("fence_epoch")
    status: dict[str, object] = {
        "spool": str(spool_path),
        "backlog records": stats.records,
        "backlog values": stats.values,
        "backlog bytes": stats.bytes,
        "oldest value": _iso(stats.oldest_ts_ms),
        "dropped records": stats.dropped_records_total,
        "dropped values": stats.dropped_values_total,
        "last bdSeq": "-" if bd_seq is None else bd_seq,
        "highest fence epoch": "-" if fence is None else fence,
    }
    status_file = status_path_for(spool_path)
    if status_file.exists():
        live = json.loads(status_file.read_text(encoding="utf-8"))
        updated = live.pop("updated", None)
        status.update(live)
        status["status written"] = _iso(updated if isinstance(updated, int) else None)
    return status
