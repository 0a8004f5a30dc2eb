"""``andon edge status``: read an edge's spool file without disturbing the running agent."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from andon.edge.spool import StoreAndForwardSpool
from andon.testing.clock import SystemClock

__all__ = ["read_edge_status"]


def read_edge_status(spool_path: Path) -> dict[str, object]:
    if not spool_path.exists():
        raise ValueError(f"no spool at {spool_path} (has this edge run yet?)")
    # Opening with limits high enough that reading never drops anything.
    with StoreAndForwardSpool(
        spool_path, clock=SystemClock(), max_bytes=2**62, max_age_s=float("inf")
    ) as spool:
        stats = spool.stats()
        bd_seq = spool.get_int("bd_seq")
        fence = spool.get_int("fence_epoch")
    oldest = (
        datetime.fromtimestamp(stats.oldest_ts_ms / 1000, tz=UTC).isoformat(timespec="seconds")
        if stats.oldest_ts_ms
        else "-"
    )
    return {
        "spool": str(spool_path),
        "backlog records": stats.records,
        "backlog values": stats.values,
        "backlog bytes": stats.bytes,
        "oldest value": oldest,
        "dropped records": stats.dropped_records_total,
        "dropped values": stats.dropped_values_total,
        "last bdSeq": "-" if bd_seq is None else bd_seq,
        "highest fence epoch": "-" if fence is None else fence,
    }
