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

Added states (``add_override``, a stop patched in by hand): over [start, end) the given code
replaces the PLC's, whatever arrives later; both ends always start an interval, so the derived
intervals it covers are replaced and one it covers in part is cut at its edges (the part before
keeps its start and reason, the part after starts at ``end`` with its state's default reason). The
PLC codes underneath are kept, so removing the added state gives back what the PLC said. Added
states never overlap each other, and one is not added over a manual split (revert that first).

Memory: ``prune_before`` forgets what lies before the interval containing an instant (the
service keeps a horizon for late data); ``intervals`` then start at that interval. The samples
kept for that horizon (a week at 1 Hz: most of what the builder holds) are ``SampleLog``s, 16
bytes a sample.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from andon.domain.assets import AssetPath
from andon.domain.errors import DomainError
from andon.domain.sample_log import InternedSampleLog, SampleLog
from andon.domain.states import PRODUCTION, Mode, StateMap, StateType

__all__ = [
    "IntervalBuilder",
    "IntervalChanges",
    "ModeSample",
    "StateInterval",
    "StateOverride",
    "StateSample",
]

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
class StateOverride:
    """A state added by hand over [start_ms, end_ms): ``code`` replaces the PLC's there."""

    start_ms: int
    end_ms: int
    code: int

    def __post_init__(self) -> None:
        if self.end_ms <= self.start_ms:
            raise DomainError(f"an added state must end after it starts ({self.start_ms})")

    def overlaps(self, start_ms: int, end_ms: int) -> bool:
        return self.start_ms < end_ms and start_ms < self.end_ms


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

    def then(self, later: IntervalChanges) -> IntervalChanges:
        """The net change of this one followed by ``later``: a record added then removed never
        existed, one removed then added back is unchanged."""
        removed = [iv for iv in self.removed if iv not in later.added]
        removed += [iv for iv in later.removed if iv not in self.added]
        added = [iv for iv in self.added if iv not in later.removed]
        added += [iv for iv in later.added if iv not in self.removed]
        return IntervalChanges(
            tuple(removed), tuple(added), self.dropped_reasons + later.dropped_reasons
        )


class IntervalBuilder:
    """Derives and keeps the state intervals of one asset."""

    def __init__(
        self, asset: AssetPath, state_map: StateMap, default_mode: Mode = PRODUCTION
    ) -> None:
        self.asset = asset
        self._map = state_map
        self._default_mode = default_mode
        self._codes = SampleLog()  # the PLC's state codes
        self._modes: InternedSampleLog[Mode] = InternedSampleLog()
        self._latest_sample_ms: int | None = None  # of codes and modes (pruning keeps it)
        self._splits: set[int] = set()
        self._split_ts: list[int] = []
        self._reasons: dict[int, str] = {}  # interval start -> reason assigned by a user
        self._overrides: dict[int, StateOverride] = {}  # by start
        self._override_ts: list[int] = []  # starts, sorted
        self._edges: set[int] = set()  # starts and ends of the overrides
        self._edge_ts: list[int] = []
        self._intervals: list[StateInterval] = []
        self._starts: list[int] = []

    # -- queries ---------------------------------------------------------------------------
    @property
    def intervals(self) -> tuple[StateInterval, ...]:
        return tuple(self._intervals)

    @property
    def last(self) -> StateInterval | None:
        """The latest interval (open unless the state became unknown), without copying them
        all as ``intervals`` does."""
        return self._intervals[-1] if self._intervals else None

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

    @property
    def overrides(self) -> tuple[StateOverride, ...]:
        return tuple(self._overrides[s] for s in self._override_ts)

    def override_at(self, ts_ms: int) -> StateOverride | None:
        i = bisect_right(self._override_ts, ts_ms) - 1
        if i >= 0:
            found = self._overrides[self._override_ts[i]]
            if ts_ms < found.end_ms:
                return found
        return None

    @property
    def splits(self) -> tuple[int, ...]:
        return tuple(self._split_ts)

    @property
    def memory_size(self) -> int:
        """How many things the builder holds (samples, edits, intervals): what pruning bounds."""
        return (
            len(self._codes) + len(self._modes) + len(self._split_ts) + len(self._reasons)
            + len(self._override_ts) + len(self._intervals)
        )  # fmt: skip

    # -- input -----------------------------------------------------------------------------
    def apply(
        self, samples: Iterable[StateSample] = (), modes: Iterable[ModeSample] = ()
    ) -> IntervalChanges:
        """Add state and mode samples (any order, duplicates allowed) and re-derive what they touch.

        A sample that contradicts a known one at the same instant is bad input: the whole batch
        is rejected with a DomainError and nothing changes."""
        latest = self._latest_sample_ms
        incoming = ((s.ts_ms, s.code) for s in samples)
        new_codes = _new_values(self._codes.get, latest, incoming, "state code")
        incoming_modes = ((m.ts_ms, m.mode) for m in modes)
        new_modes = _new_values(self._modes.get, latest, incoming_modes, "mode")
        if not new_codes and not new_modes:
            return IntervalChanges()
        instants = sorted({*new_codes, *new_modes})
        live = self._after_everything(instants[0])
        self._codes.put_many(new_codes)
        self._modes.put_many(new_modes)
        if latest is None or instants[-1] > latest:
            self._latest_sample_ms = instants[-1]
        if live:
            return self._extend(instants, new_codes, new_modes)
        return self._rederive(instants[0])

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
        changes = self._rederive(at_ms)
        # Only now: a re-derivation drops user reasons of starts it did not have before.
        if reason is not None and current.state_type is not StateType.RUNNING:
            changes = changes.then(self.assign_reason(at_ms, reason))
        return changes

    def merge(self, at_ms: int) -> IntervalChanges:
        """Undo the manual split at ``at_ms``: the two parts are one interval again (with the
        first part's reason), unless a state or mode change also starts there."""
        if at_ms not in self._splits:
            raise DomainError(f"{self.asset}: no manual split at {at_ms}")
        self._splits.discard(at_ms)
        self._split_ts.remove(at_ms)
        self._reasons.pop(at_ms, None)
        return self._rederive(at_ms)

    def add_override(self, override: StateOverride) -> IntervalChanges:
        """Add a state by hand over [start, end) (see the module's rules)."""
        start, end = override.start_ms, override.end_ms
        for other in self._overrides.values():
            if other.overlaps(start, end):
                raise DomainError(
                    f"{self.asset}: overlaps the state added by hand from {other.start_ms} "
                    f"to {other.end_ms}; revert that one first"
                )
        first = bisect_right(self._split_ts, start)
        if first < bisect_left(self._split_ts, end):
            raise DomainError(
                f"{self.asset}: the interval split by hand at {self._split_ts[first]} lies "
                "inside; revert that split first"
            )
        self._overrides[start] = override
        self._override_ts.insert(bisect_left(self._override_ts, start), start)
        self._set_edges()
        return self._rederive(start)

    def remove_override(self, start_ms: int) -> IntervalChanges:
        """Take back the state added at ``start_ms``: the PLC's codes show again."""
        if start_ms not in self._overrides:
            raise DomainError(f"{self.asset}: no state was added by hand at {start_ms}")
        del self._overrides[start_ms]
        self._override_ts.remove(start_ms)
        self._set_edges()
        self._reasons.pop(start_ms, None)
        return self._rederive(start_ms)

    def _set_edges(self) -> None:
        self._edges = {t for o in self._overrides.values() for t in (o.start_ms, o.end_ms)}
        self._edge_ts = sorted(self._edges)

    def prune_before(self, ts_ms: int) -> int | None:
        """Forget what lies before the interval that contains ``ts_ms`` (kept, as is everything
        after it); returns the start of the first interval kept, None if nothing was pruned.
        The derivation from there on is unchanged: the code and mode in force at that start are
        kept, and so is any added state reaching over it."""
        i = bisect_right(self._starts, ts_ms) - 1
        if i <= 0:
            return None
        floor = self._starts[i]
        del self._intervals[:i]
        del self._starts[:i]
        for log in (self._codes, self._modes):
            log.drop_first(max(log.index_at_or_before(floor), 0))
        drop = bisect_left(self._split_ts, floor)
        self._splits.difference_update(self._split_ts[:drop])
        del self._split_ts[:drop]
        self._reasons = {s: r for s, r in self._reasons.items() if s >= floor}
        for start in [s for s, o in self._overrides.items() if o.end_ms <= floor]:
            del self._overrides[start]
            self._override_ts.remove(start)
        self._set_edges()
        return floor

    # -- derivation ------------------------------------------------------------------------
    def _code_at(self, ts_ms: int, plc_code: int | None) -> int | None:
        override = self.override_at(ts_ms)
        return plc_code if override is None else override.code

    def _make(self, start: int, end: int | None, code: int, mode: Mode) -> StateInterval:
        definition = self._map.resolve(code)
        reason = self._reasons.get(start, definition.default_reason)
        return StateInterval(self.asset, start, end, code, definition.type, reason, mode)

    def _after_everything(self, ts_ms: int) -> bool:
        """Whether samples from ``ts_ms`` on are live data for ``_extend``: after every instant
        known, with an open interval and no reason kept for a start after it."""
        if not self._intervals or self._intervals[-1].end_ms is not None:
            return False
        last = self._starts[-1]
        if self._latest_sample_ms is not None and self._latest_sample_ms > last:
            last = self._latest_sample_ms
        for order in (self._split_ts, self._edge_ts):
            if order and order[-1] > last:
                last = order[-1]
        return ts_ms > last and not any(s > self._starts[-1] for s in self._reasons)

    def _extend(
        self, instants: list[int], new_codes: dict[int, int], new_modes: dict[int, Mode]
    ) -> IntervalChanges:
        """``_rederive`` for live data (``_after_everything``): only the new instants are walked,
        from the open interval's code and mode (no split or added state lies ahead), and the
        samples there are the new ones. A re-derivation walks every sample since the interval
        before the open one: for a machine running for hours, every sample of those hours,
        again for each new one."""
        current = self._intervals[-1]
        start, code, mode = current.start_ms, current.code, current.mode
        added: list[StateInterval] = []
        for t in instants:
            new_code = new_codes.get(t, code)
            new_mode = new_modes.get(t, mode)
            if new_code != code or new_mode != mode:
                added.append(self._make(start, t, code, mode))
                start, code, mode = t, new_code, new_mode
        if not added:
            return IntervalChanges()
        added.append(self._make(start, None, code, mode))
        del self._intervals[-1]
        del self._starts[-1]
        self._intervals.extend(added)
        self._starts.extend(iv.start_ms for iv in added)
        return IntervalChanges(removed=(current,), added=tuple(added))

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
        codes, modes = self._codes, self._modes
        ci = codes.index_at_or_before(begin)
        mi = modes.index_at_or_before(begin)
        plc = codes.value_at(ci) if ci >= 0 else None
        code = self._code_at(begin, plc)
        mode = modes.value_at(mi) if mi >= 0 else self._default_mode
        start = begin
        # The samples after ``begin``, walked alongside the merged instants (each is one).
        code_ts, code_values = codes.timestamps(ci + 1), codes.values(ci + 1)
        mode_ts, mode_values = modes.timestamps(mi + 1), modes.values(mi + 1)
        next_code = next_mode = 0
        instants = heapq.merge(
            code_ts,
            mode_ts,
            self._split_ts[bisect_right(self._split_ts, begin) :],
            self._edge_ts[bisect_right(self._edge_ts, begin) :],
        )
        previous: int | None = None
        for t in instants:
            if t == previous:
                continue
            previous = t
            if next_code < len(code_ts) and code_ts[next_code] == t:
                plc = code_values[next_code]
                next_code += 1
            new_code = self._code_at(t, plc) if self._edges else plc
            new_mode = mode
            if next_mode < len(mode_ts) and mode_ts[next_mode] == t:
                new_mode = mode_values[next_mode]
                next_mode += 1
            if code is None:
                start = t
            elif new_code != code or new_mode != mode or t in self._splits or t in self._edges:
                yield start, t, code, mode
                start = t
            code, mode = new_code, new_mode
        if code is not None:
            yield start, None, code, mode


def _new_values(
    known: Callable[[int], V | None],
    latest: int | None,
    incoming: Iterable[tuple[int, V]],
    what: str,
) -> dict[int, V]:
    """The samples of ``incoming`` not ``known`` yet (none is after ``latest``)."""
    fresh: dict[int, V] = {}
    for ts, value in incoming:
        current = None if latest is None or ts > latest else known(ts)
        if current is None:
            current = fresh.get(ts)
        if current is None:
            fresh[ts] = value
        elif current != value:
            raise DomainError(f"conflicting {what} at {ts}: {current!r} and {value!r}")
    return fresh
