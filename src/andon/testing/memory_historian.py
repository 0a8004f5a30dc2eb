"""A historian store in memory, with the same semantics as the SQL stores.

It goes through the same value codec (``andon.storage.codec``) as SQLite and PostgreSQL, so
what is rejected, how NaN/uint64/bool come back and how buckets are formed are identical; the
contract suite in ``tests/contract`` runs against all three.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from andon.cluster.model import FencingToken
from andon.storage.codec import (
    SampleRow,
    decode_value,
    encode_sample_rows,
    infer_datatype,
    numeric_value,
)
from andon.storage.store import DEFAULT_HISTORY_LIMIT
from andon.storage.types import HistoryBucket, QuarantinedSample, Sample, TagInfo
from andon.testing.memory_arbiter import MemoryArbiter

__all__ = ["InMemoryHistorianStore"]


@dataclass(slots=True)
class _Tag:
    id: int
    path: str
    datatype: int
    timestamps: list[int] = field(default_factory=list)  # sorted
    rows: dict[int, SampleRow] = field(default_factory=dict)  # ts -> row


class InMemoryHistorianStore:
    """``arbiter``: where fenced writes check their token (the in-memory lease table)."""

    def __init__(self, arbiter: MemoryArbiter | None = None) -> None:
        self._arbiter = arbiter
        self._lock = threading.Lock()
        self._tags: dict[str, _Tag] = {}
        self._quarantine: list[QuarantinedSample] = []
        self.closed = False

    def write_batch(self, samples: Sequence[Sample], fence: FencingToken | None = None) -> int:
        if fence is None:
            with self._lock:
                return self._write(samples)
        if self._arbiter is None:
            raise ValueError("a fenced write needs the store's arbiter (none was given)")
        # The arbiter's lock is held through the write: no takeover while it is in flight.
        with self._lock, self._arbiter.fenced(fence):
            return self._write(samples)

    def _write(self, samples: Sequence[Sample]) -> int:
        new_tags: dict[str, _Tag] = {}
        for sample in samples:
            if sample.tag in self._tags:
                continue
            pending = new_tags.get(sample.tag)
            if pending is None:
                pending = new_tags[sample.tag] = _Tag(
                    len(self._tags) + len(new_tags) + 1, sample.tag, 0
                )
            if not pending.datatype:
                pending.datatype = sample.datatype or infer_datatype(sample.value)
        refs = {path: (tag.id, tag.datatype) for path, tag in self._tags.items()}
        refs.update((path, (tag.id, tag.datatype)) for path, tag in new_tags.items())
        # Encoding raises before anything changes, so a rejected batch leaves no trace.
        rows = encode_sample_rows(samples, refs)
        self._tags.update(new_tags)
        by_id = {tag.id: tag for tag in self._tags.values()}
        inserted = 0
        for row in rows:
            tag = by_id[row[0]]
            ts = row[1]
            if ts in tag.rows:
                continue
            tag.rows[ts] = row
            bisect.insort(tag.timestamps, ts)
            inserted += 1
        return inserted

    def _sample(self, tag: _Tag, ts: int) -> Sample:
        _, _, vd, vi, vt, vb, quality, hist = tag.rows[ts]
        value = decode_value(vd, vi, vt, vb, tag.datatype)
        return Sample(tag.path, ts, value, quality, hist, tag.datatype)

    def _range(self, tag: _Tag, start_ms: int, end_ms: int) -> list[int]:
        low = bisect.bisect_left(tag.timestamps, start_ms)
        high = bisect.bisect_left(tag.timestamps, end_ms)
        return tag.timestamps[low:high]

    def history(
        self, tag: str, start_ms: int, end_ms: int, limit: int = DEFAULT_HISTORY_LIMIT
    ) -> list[Sample]:
        with self._lock:
            found = self._tags.get(tag)
            if found is None:
                return []
            return [self._sample(found, ts) for ts in self._range(found, start_ms, end_ms)[:limit]]

    def aggregate(
        self, tag: str, start_ms: int, end_ms: int, bucket_ms: int
    ) -> list[HistoryBucket]:
        if bucket_ms <= 0:
            raise ValueError(f"bucket_ms must be positive, got {bucket_ms}")
        with self._lock:
            found = self._tags.get(tag)
            if found is None:
                return []
            buckets: dict[int, list[int]] = {}
            for ts in self._range(found, start_ms, end_ms):
                buckets.setdefault(ts - ts % bucket_ms, []).append(ts)
            result = []
            for start, timestamps in buckets.items():
                numbers = [
                    n
                    for ts in timestamps
                    if (n := numeric_value(found.rows[ts][2], found.rows[ts][3], found.datatype))
                    is not None
                ]
                last_ts = timestamps[-1]
                result.append(
                    HistoryBucket(
                        start_ms=start,
                        count=len(timestamps),
                        min=min(numbers) if numbers else None,
                        max=max(numbers) if numbers else None,
                        avg=math.fsum(numbers) / len(numbers) if numbers else None,
                        last=self._sample(found, last_ts).value,
                        last_ts_ms=last_ts,
                    )
                )
            return result

    def tags(self) -> list[TagInfo]:
        with self._lock:
            return [TagInfo(t.path, t.datatype) for t in sorted(self._tags.values(), key=_path)]

    def count(self, tag: str | None = None) -> int:
        with self._lock:
            if tag is None:
                return sum(len(t.rows) for t in self._tags.values())
            found = self._tags.get(tag)
            return 0 if found is None else len(found.rows)

    def latest(self, tag: str) -> Sample | None:
        with self._lock:
            found = self._tags.get(tag)
            if found is None or not found.timestamps:
                return None
            return self._sample(found, found.timestamps[-1])

    def quarantine(self, tag: str, ts_ms: int, raw: str, reason: str) -> None:
        with self._lock:
            record = QuarantinedSample(
                len(self._quarantine) + 1, tag, ts_ms, raw, reason, time.time_ns() // 1_000_000
            )
            self._quarantine.append(record)

    def quarantined(self) -> list[QuarantinedSample]:
        with self._lock:
            return list(self._quarantine)

    def close(self) -> None:
        self.closed = True


def _path(tag: _Tag) -> str:
    return tag.path
