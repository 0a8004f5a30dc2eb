"""Records that cross the storage boundary. Plain data, no IO."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["HistoryBucket", "QuarantinedSample", "Sample", "SampleValue", "TagInfo"]

#: A historised value. Booleans are stored as integers 0/1 and come back as ``bool`` when the
#: tag's datatype says so; ``None`` is an explicit null (e.g. a BAD-quality sample).
SampleValue = bool | int | float | str | bytes | None


class Sample(NamedTuple):
    """One value of one tag at one instant.

    ``tag`` is the full tag path ``<group>/<edge node>/<device>/<metric name>`` (device omitted
    for node metrics). ``ts_ms`` is the source timestamp in UTC milliseconds. The historian is
    idempotent on ``(tag, ts_ms)``: a second sample with the same key is ignored.
    ``datatype`` is the Sparkplug datatype code, used when the tag is first seen.

    A named tuple rather than a dataclass: one is built per value on the ingest hot path, and a
    tuple is several times cheaper to create than a frozen dataclass.
    """

    tag: str
    ts_ms: int
    value: SampleValue
    quality: int = 192
    is_historical: bool = False
    datatype: int = 0


@dataclass(frozen=True, slots=True)
class TagInfo:
    tag: str
    datatype: int
    sample_count: int | None = None


@dataclass(frozen=True, slots=True)
class HistoryBucket:
    """Aggregate of the samples in ``[start_ms, start_ms + bucket_ms)``.

    Buckets are aligned to the Unix epoch (``start_ms`` is a multiple of ``bucket_ms``) so that
    e.g. hourly buckets fall on the hour whatever the query range. ``count`` counts every sample
    in the bucket; ``min``/``max``/``avg`` are over the numeric ones (ints, bools as 0/1, floats;
    NaN excluded) and are ``None`` when there are none. ``last`` is the value of the latest
    sample in the bucket, whatever its type.
    """

    start_ms: int
    count: int
    min: float | None
    max: float | None
    avg: float | None
    last: SampleValue
    last_ts_ms: int | None


@dataclass(frozen=True, slots=True)
class QuarantinedSample:
    """A sample the historian could not store, kept with the reason instead of being lost.

    ``raw`` is ``repr()`` of the original value (always valid text, even for bytes or strings
    the database cannot hold).
    """

    id: int
    tag: str
    ts_ms: int
    raw: str
    reason: str
    created_at_ms: int
