"""State intervals derived from (ts_ms, PLC code) samples and mode changes, insensitive to arrival
order: store-and-forward backlogs arrive late and out of order, and the result must be exactly
what live data would have given.

An interval starts at every change of (code, mode) and at every manual split, and lasts until the
next one; the last interval is open (``end_ms is None``). Samples before the first state sample
give no interval (the state is unknown).

Reason persistence rule: a reason assigned by a user is remembered by the instant where its
interval started and by the interval's code. After a re-derivation it stays on the new interval
that contains that instant and still has the same code; so it survives when the interval's start is
unchanged (the usual case), when late data moves its start or its end, or when it is split. If no
such interval exists any more (the state at that instant turned out to be different), the reason is
dropped and reported in ``IntervalChanges.dropped_reasons`` so the service can audit it.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from andon.domain.assets import AssetPath
from andon.domain.errors import DomainError
from andon.domain.states import PRODUCTION, Mode, StateMap, StateType

__all__ = ["IntervalBuilder", "IntervalChanges", "ModeSample", "StateInterval", "StateSample"]

V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class StateSample:
    ts_ms: int
    code: int


@dataclass(frozen=True, slots=True)
class ModeSample:
    ts_ms: int
    mode: Mode


@dataclass(frozen=True, slots=True)
class StateInterval:
    asset: AssetPath
    start_ms: int
    end_ms: int | None  # None: still open
    code: int
    state_type: StateType
    reason_id: str | None
    mode: Mode

    @property
    def duration_ms(self) -> int | None:
        return None if self.end_ms is None else self.end_ms - self.start_ms

    def contains(self, ts_ms: int) -> bool:
        return self.start_ms <= ts_ms and (self.end_ms is None or ts_ms < self.end_ms)


@dataclass(frozen=True, slots=True)
class IntervalChanges:
    """What a service must persist: delete ``removed`` (by asset + start_ms), insert ``added``.
    An interval that only changed its end or reason appears in both."""

    removed: tuple[StateInterval, ...] = ()
    added: tuple[StateInterval, ...] = ()
    dropped_reasons: tuple[tuple[int, str], ...] = ()  # (former interval start, reason id)

    @property
    def is_empty(self) -> bool:
        return not (self.removed or self.added or self.dropped_reasons)


class IntervalBuilder:
    """Derives and keeps the state intervals of one asset."""

    def __init__(
        self, asset: AssetPath, state_map: StateMap, default_mode: Mode = PRODUCTION
    ) -> None:
        self.asset = asset
        self._map = state_map
        self._default_mode = default_mode
        self._codes: dict[int, int] = {}
        self._code_ts: list[int] = []
        self._modes: dict[int, Mode] = {}
        self._mode_ts: list[int] = []
        self._splits: set[int] = set()
        self._split_ts: list[int] = []
        self._reasons: dict[int, str] = {}  # interval start -> reason assigned by a user
        self._intervals: list[StateInterval] = []
        self._starts: list[int] = []

    # -- queries ---------------------------------------------------------------------------
    @property
    def intervals(self) -> tuple[StateInterval, ...]:
        return tuple(self._intervals)

    def interval_at(self, ts_ms: int) -> StateInterval | None:
        i = bisect_right(self._starts, ts_ms) - 1
        if i >= 0 and self._intervals[i].contains(ts_ms):
            return self._intervals[i]
        return None

    def overlapping(self, start_ms: int, end_ms: int) -> tuple[StateInterval, ...]:
        """Intervals that overlap [start_ms, end_ms)."""
        i = max(bisect_right(self._starts, start_ms) - 1, 0)
        j = bisect_left(self._starts, end_ms)
        return tuple(iv for iv in self._intervals[i:j] if iv.end_ms is None or iv.end_ms > start_ms)

    # -- input -----------------------------------------------------------------------------
    def apply(
        self, samples: Iterable[StateSample] = (), modes: Iterable[ModeSample] = ()
    ) -> IntervalChanges:
        """Add state and mode samples (any order, duplicates allowed) and re-derive what they touch.

        A sample that contradicts a known one at the same instant is bad input: the whole batch
        is rejected with a DomainError and nothing changes."""
        new_codes = _new_values(self._codes, ((s.ts_ms, s.code) for s in samples), "state code")
        new_modes = _new_values(self._modes, ((m.ts_ms, m.mode) for m in modes), "mode")
        if not new_codes and not new_modes:
            return IntervalChanges()
        _merge_into(self._codes, self._code_ts, new_codes)
        _merge_into(self._modes, self._mode_ts, new_modes)
        return self._rederive(min([*new_codes, *new_modes]))

    def assign_reason(self, start_ms: int, reason_id: str | None) -> IntervalChanges:
        """Give the stop starting at ``start_ms`` a reason (``None`` restores the default)."""
        i = bisect_left(self._starts, start_ms)
        if i == len(self._starts) or self._starts[i] != start_ms:
            raise DomainError(f"{self.asset}: no state interval starts at {start_ms}")
        old = self._intervals[i]
        if old.state_type is StateType.RUNNING:
            raise DomainError(f"{self.asset}: reasons apply to stops, not to running time")
        if reason_id is None:
            self._reasons.pop(start_ms, None)
        else:
            self._reasons[start_ms] = reason_id
        new = self._make(start_ms, old.end_ms, old.code, old.mode)
        if new == old:
            return IntervalChanges()
        self._intervals[i] = new
        return IntervalChanges(removed=(old,), added=(new,))

    def split(self, at_ms: int) -> IntervalChanges:
        """Split the interval containing ``at_ms`` in two (manual "split downtime"); both parts
        keep the reason, so the user can then give one of them another reason."""
        current = self.interval_at(at_ms)
        if current is None or current.start_ms == at_ms:
            raise DomainError(f"{self.asset}: no interval to split strictly inside at {at_ms}")
        self._splits.add(at_ms)
        self._split_ts.insert(bisect_left(self._split_ts, at_ms), at_ms)
        reason = self._reasons.get(current.start_ms)
        if reason is not None:
            self._reasons[at_ms] = reason
        return self._rederive(at_ms)

    def merge(self, at_ms: int) -> IntervalChanges:
        """Undo the manual split at ``at_ms``: the two parts are one interval again (with the
        first part's reason), unless a state or mode change also starts there."""
        if at_ms not in self._splits:
            raise DomainError(f"{self.asset}: no manual split at {at_ms}")
        self._splits.discard(at_ms)
        self._split_ts.remove(at_ms)
        self._reasons.pop(at_ms, None)
        return self._rederive(at_ms)

    # -- derivation ------------------------------------------------------------------------
    def _make(self, start: int, end: int | None, code: int, mode: Mode) -> StateInterval:
        definition = self._map.resolve(code)
        reason = self._reasons.get(start, definition.default_reason)
        return StateInterval(self.asset, start, end, code, definition.type, reason, mode)

    def _rederive(self, changed_from: int) -> IntervalChanges:
        containing = bisect_right(self._starts, changed_from) - 1
        if containing < 0:
            keep, begin = 0, changed_from
        else:
            # From the predecessor: a change exactly at a start may merge it into the one before.
            keep = max(containing - 1, 0)
            begin = self._starts[keep]
        old_tail = self._intervals[keep:]
        old_codes = {iv.start_ms: iv.code for iv in old_tail}
        carried = {s: r for s, r in self._reasons.items() if s >= begin and s in old_codes}
        stale = [s for s in self._reasons if s >= begin and s not in old_codes]
        for s in [*carried, *stale]:
            del self._reasons[s]
        spans = list(self._spans_from(begin))
        span_starts = [s for s, _e, _c, _m in spans]
        dropped: list[tuple[int, str]] = []
        for s, reason in sorted(carried.items()):
            i = bisect_right(span_starts, s) - 1
            end = spans[i][1] if i >= 0 else None
            if i >= 0 and spans[i][2] == old_codes[s] and (end is None or s < end):
                target = spans[i][0]
                # Prefer the reason whose start did not move; else the earliest one.
                if target not in self._reasons or s == target:
                    self._reasons[target] = reason
                    continue
            dropped.append((s, reason))
        new_tail = [self._make(s, e, c, m) for s, e, c, m in spans]
        self._intervals[keep:] = new_tail
        self._starts[keep:] = span_starts
        old_set, new_set = set(old_tail), set(new_tail)
        return IntervalChanges(
            removed=tuple(iv for iv in old_tail if iv not in new_set),
            added=tuple(iv for iv in new_tail if iv not in old_set),
            dropped_reasons=tuple(dropped),
        )

    def _spans_from(self, begin: int) -> Iterator[tuple[int, int | None, int, Mode]]:
        ci = bisect_right(self._code_ts, begin) - 1
        mi = bisect_right(self._mode_ts, begin) - 1
        code = self._codes[self._code_ts[ci]] if ci >= 0 else None
        mode = self._modes[self._mode_ts[mi]] if mi >= 0 else self._default_mode
        start = begin
        instants = heapq.merge(
            self._code_ts[ci + 1 :],
            self._mode_ts[mi + 1 :],
            self._split_ts[bisect_right(self._split_ts, begin) :],
        )
        previous: int | None = None
        for t in instants:
            if t == previous:
                continue
            previous = t
            new_code = self._codes.get(t, code)
            new_mode = self._modes.get(t, mode)
            if code is None:
                start = t
            elif new_code != code or new_mode != mode or t in self._splits:
                yield start, t, code, mode
                start = t
            code, mode = new_code, new_mode
        if code is not None:
            yield start, None, code, mode


def _new_values(known: dict[int, V], incoming: Iterable[tuple[int, V]], what: str) -> dict[int, V]:
    fresh: dict[int, V] = {}
    for ts, value in incoming:
        current = known.get(ts, fresh.get(ts))
        if current is None:
            fresh[ts] = value
        elif current != value:
            raise DomainError(f"conflicting {what} at {ts}: {current!r} and {value!r}")
    return fresh


def _merge_into(values: dict[int, V], order: list[int], fresh: dict[int, V]) -> None:
    if not fresh:
        return
    values.update(fresh)
    new = sorted(fresh)
    if not order or new[0] > order[-1]:
        order.extend(new)  # live data: appended in O(batch)
    else:
        order[:] = sorted(order + new)  # timsort merges the two sorted runs in linear time
