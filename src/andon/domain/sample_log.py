"""``SampleLog``: integer samples of one signal by timestamp, kept compact.

The MES builders keep a week of samples per asset for late (store-and-forward) data. As a dict
of Python ints plus a sorted list of its keys, a sample cost some 100 bytes (a dict slot, the
list slot, and the int objects of the timestamp and the value); here a timestamp and a value are
8 bytes each in two parallel ``array('q')`` columns, in timestamp order.

Live data arrives in time order and is appended; late data is inserted where it belongs (a
memmove of the part after it, or one merge of that part for a larger batch). A value or a
timestamp outside the signed 64-bit range turns its column into a list of ints, so any int is
kept as it came (a PLC may send an unsigned 64-bit code), only less compactly.
``InternedSampleLog`` keeps other values (modes) as indices in a table of those seen.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import Generic, TypeAlias, TypeVar

__all__ = ["InternedSampleLog", "SampleLog"]

H = TypeVar("H", bound=Hashable)

#: A batch of late samples up to this size is inserted one by one; a larger one is merged
#: with the part of the log after its first sample (one pass, whatever the batch size).
_INSERT_ONE_BY_ONE = 16

#: Distinct values an ``InternedSampleLog`` holds beyond which pruning forgets the unused ones.
_DISTINCT_KEPT_UNUSED = 64

#: One column: 64-bit ints packed, or a list once an int did not fit.
Column: TypeAlias = "array[int] | list[int]"


def _column() -> Column:
    return array("q")


def _extended(column: Column, more: list[int]) -> Column:
    """``column`` with ``more`` appended (a list if one of them does not fit 64 bits)."""
    if isinstance(column, array):
        try:
            column.extend(array("q", more))  # converted first: nothing appended on overflow
            return column
        except OverflowError:
            column = list(column)
    column.extend(more)
    return column


class SampleLog:
    """Int values by int timestamp (ms), unique timestamps, sorted; a dict in behaviour
    (``put`` replaces the value at a known timestamp) with positional access for walking."""

    __slots__ = ("_ts", "_values")

    def __init__(self) -> None:
        self._ts: Column = _column()
        self._values: Column = _column()

    def __len__(self) -> int:
        return len(self._ts)

    # -- lookups ---------------------------------------------------------------------------
    @property
    def last_ts(self) -> int | None:
        """The latest timestamp (None when empty)."""
        return self._ts[-1] if self._ts else None

    def get(self, ts_ms: int) -> int | None:
        """The value at exactly ``ts_ms``, None if there is none."""
        stamps = self._ts
        if not stamps or ts_ms > stamps[-1]:  # live data: no search
            return None
        i = bisect_left(stamps, ts_ms)
        return self._values[i] if stamps[i] == ts_ms else None

    def index_at_or_before(self, ts_ms: int) -> int:
        """The position of the last sample at or before ``ts_ms`` (-1 if none)."""
        stamps = self._ts
        if stamps and ts_ms >= stamps[-1]:
            return len(stamps) - 1
        return bisect_right(stamps, ts_ms) - 1

    def ts_at(self, index: int) -> int:
        return self._ts[index]

    def value_at(self, index: int) -> int:
        return self._values[index]

    def timestamps(self, start: int = 0) -> Sequence[int]:
        """The timestamps from position ``start`` on (a copy: the log may change after)."""
        return self._ts[start:]

    def values(self, start: int = 0) -> Sequence[int]:
        """The values from position ``start`` on (a copy), aligned with ``timestamps``."""
        return self._values[start:]

    def items(self) -> Iterator[tuple[int, int]]:
        return zip(self._ts, self._values, strict=True)

    # -- changes ---------------------------------------------------------------------------
    def put(self, ts_ms: int, value: int) -> int:
        """Set the value at ``ts_ms`` (replacing one there); returns its position."""
        stamps = self._ts
        if not stamps or ts_ms > stamps[-1]:  # live data, appended (inline: the common case)
            try:
                stamps.append(ts_ms)
            except OverflowError:
                stamps = self._ts = [*stamps, ts_ms]
            try:
                self._values.append(value)
            except OverflowError:
                self._values = [*self._values, value]
            return len(stamps) - 1
        i = bisect_left(stamps, ts_ms)
        if stamps[i] == ts_ms:
            self._set(i, value)
        else:
            self._insert(i, ts_ms, value)
        return i

    def put_many(self, samples: Mapping[int, int]) -> None:
        """``put`` each value by its timestamp, in one pass over the part of the log they reach
        into."""
        if len(samples) == 1:  # live data: a sample a message
            for ts_ms, value in samples.items():
                self.put(ts_ms, value)
            return
        if len(samples) <= _INSERT_ONE_BY_ONE:
            for ts_ms in sorted(samples):
                self.put(ts_ms, samples[ts_ms])
            return
        stamps = self._ts
        first = min(samples)
        if stamps and first <= stamps[-1]:  # late: merged with the part of the log after it
            start = bisect_left(stamps, first)
            samples = {**dict(zip(stamps[start:], self._values[start:], strict=True)), **samples}
            del self._ts[start:]
            del self._values[start:]
        order = sorted(samples)
        self._ts = _extended(self._ts, order)
        self._values = _extended(self._values, [samples[ts] for ts in order])

    def drop_first(self, count: int) -> None:
        """Forget the ``count`` earliest samples."""
        if count > 0:
            del self._ts[:count]
            del self._values[:count]

    # -- columns that widen to lists for ints beyond 64 bits ----------------------------------
    def _insert(self, index: int, ts_ms: int, value: int) -> None:
        try:
            self._ts.insert(index, ts_ms)
        except OverflowError:
            self._ts = list(self._ts)
            self._ts.insert(index, ts_ms)
        try:
            self._values.insert(index, value)
        except OverflowError:
            self._values = list(self._values)
            self._values.insert(index, value)

    def _set(self, index: int, value: int) -> None:
        try:
            self._values[index] = value
        except OverflowError:
            self._values = list(self._values)
            self._values[index] = value


class InternedSampleLog(Generic[H]):
    """A ``SampleLog`` of hashable values from a small set (an asset's modes): each value is
    kept as its index in a table of the distinct values seen, which pruning renumbers once it
    holds many that are no longer sampled. A value read back is the first equal one seen."""

    __slots__ = ("_ids", "_last", "_table", "_table_ids")

    def __init__(self) -> None:
        self._ids = SampleLog()
        self._table: list[H] = []
        self._table_ids: dict[H, int] = {}
        self._last: tuple[H, int] | None = None  # callers mostly pass one object a value

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def distinct(self) -> int:
        """How many values the table holds (what renumbering bounds)."""
        return len(self._table)

    def get(self, ts_ms: int) -> H | None:
        index = self._ids.get(ts_ms)
        return None if index is None else self._table[index]

    def index_at_or_before(self, ts_ms: int) -> int:
        return self._ids.index_at_or_before(ts_ms)

    def value_at(self, index: int) -> H:
        return self._table[self._ids.value_at(index)]

    def timestamps(self, start: int = 0) -> Sequence[int]:
        return self._ids.timestamps(start)

    def values(self, start: int = 0) -> Sequence[H]:
        table = self._table
        return [table[i] for i in self._ids.values(start)]

    def items(self) -> Iterator[tuple[int, H]]:
        table = self._table
        return ((ts, table[i]) for ts, i in self._ids.items())

    def put_many(self, samples: Mapping[int, H]) -> None:
        if len(samples) == 1:  # live data: a sample a message
            for ts_ms, value in samples.items():
                self._ids.put(ts_ms, self._id(value))
        elif samples:
            self._ids.put_many({ts: self._id(value) for ts, value in samples.items()})

    def drop_first(self, count: int) -> None:
        self._ids.drop_first(count)
        if len(self._table) > _DISTINCT_KEPT_UNUSED:
            kept = dict(self.items())
            self._ids, self._table, self._table_ids, self._last = SampleLog(), [], {}, None
            self.put_many(kept)

    def _id(self, value: H) -> int:
        last = self._last
        if last is not None and last[0] is value:
            return last[1]
        found = self._table_ids.get(value)
        if found is None:
            found = self._table_ids[value] = len(self._table)
            self._table.append(value)
        self._last = (value, found)
        return found
