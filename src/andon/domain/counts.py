"""Production counts: PLC counter samples to deltas (wrap and reset), infeed/outfeed/waste.

Wrap versus reset (``counter_delta``): when a counter reads lower than before, either it passed
its maximum and started again from 0 (wrap), or someone zeroed it (reset, typically at a
changeover) and it has counted ``curr`` since. A wrap between two samples taken a second or a
minute apart only advances the counter by a small part of its range, so the heuristic is: if the
delta implied by a wrap, ``counter_max - prev + 1 + curr``, is below ``wrap_window`` (default a
quarter of the range) it is a wrap, otherwise a reset and the delta is ``curr``. The only wrong
answer is a reset while the counter was within ``wrap_window`` of its maximum; the error is then
``counter_max - prev + 1`` units at most.

Implausible jumps (``CountSeries(max_units_per_ms=...)``): a counter that jumps by more than the
asset could ever make in the time between two samples -- a PLC or simulator restarted with
another counter value, a replaced device, a counter rewritten by hand -- would add thousands of
phantom units and push performance far past 100 %. Such a delta counts as 0 units (the new value
is the new baseline) and carries the units it was not believed for in ``dropped``, so the
service can log it. The bound is ``max_units_per_ms * elapsed + IMPLAUSIBLE_SLACK``, the elapsed
time counted from the counter's last change (a batch counter standing still for an hour and then
jumping is fine); the caller gives the fastest ideal rate of the asset with a generous factor.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

from andon.domain.assets import AssetPath
from andon.domain.errors import DomainError
from andon.domain.sample_log import SampleLog

__all__ = [
    "IMPLAUSIBLE_SLACK",
    "CountChanges",
    "CountDelta",
    "CountRecord",
    "CountSeries",
    "CounterSample",
    "ProducedCount",
    "ProductionCounts",
    "counter_delta",
]


#: Units a delta may exceed the rate bound by: samples a few ms apart still carry whole units.
IMPLAUSIBLE_SLACK = 10
#: How many unchanged readings back the bound looks for the counter's last change.
_UNCHANGED_LOOKBACK = 10_000


def counter_delta(prev: int, curr: int, counter_max: int, wrap_window: int | None = None) -> int:
    """Units counted between two readings of a counter that runs 0..counter_max."""
    if counter_max <= 0:
        raise DomainError(f"counter_max must be positive, got {counter_max}")
    for name, value in (("previous", prev), ("current", curr)):
        if not 0 <= value <= counter_max:
            raise DomainError(f"{name} counter value {value} is outside 0..{counter_max}")
    if curr >= prev:
        return curr - prev
    window = max(1, (counter_max + 1) // 4) if wrap_window is None else wrap_window
    wrapped = counter_max - prev + 1 + curr
    return wrapped if wrapped < window else curr


@dataclass(frozen=True, slots=True)
class CounterSample:
    ts_ms: int
    value: int


@dataclass(frozen=True, slots=True)
class CountDelta:
    """Units counted in (start_ms, end_ms], attributed to the instant ``end_ms`` (when they were
    seen), so a delta never needs splitting at a shift boundary."""

    start_ms: int
    end_ms: int
    delta: int
    #: Units the counter moved by but that were not believed (an implausible jump; delta is 0).
    dropped: int = 0


@dataclass(frozen=True, slots=True)
class CountChanges:
    removed: tuple[CountDelta, ...] = ()
    added: tuple[CountDelta, ...] = ()


class CountSeries:
    """Deltas of one counter; samples may arrive in any order and any number of times."""

    def __init__(
        self,
        counter_max: int,
        wrap_window: int | None = None,
        *,
        max_units_per_ms: Fraction | None = None,
    ) -> None:
        if counter_max <= 0:
            raise DomainError(f"counter_max must be positive, got {counter_max}")
        self._max = counter_max
        self._window = wrap_window
        self._max_rate = max_units_per_ms
        # The bound compared in integers (``delta - slack <= rate * elapsed`` times the rate's
        # denominator): exact, and Fraction arithmetic for every sample showed in profiles.
        self._rate_num = 0 if max_units_per_ms is None else max_units_per_ms.numerator
        self._rate_den = 1 if max_units_per_ms is None else max_units_per_ms.denominator
        # Kept for the service's horizon (a week at 1 Hz): 16 bytes a sample.
        self._log = SampleLog()
        self._last: tuple[int, int] | None = None  # the latest sample, read for each new one

    @property
    def deltas(self) -> tuple[CountDelta, ...]:
        stamps, values = self._log.timestamps(), self._log.values()
        return tuple(
            self._delta(i, stamps[i], values[i], stamps[i + 1], values[i + 1])
            for i in range(len(stamps) - 1)
        )

    def _delta(self, index: int, a: int, a_value: int, b: int, b_value: int) -> CountDelta:
        """The delta between the sample at position ``index`` (``a``, ``a_value``) and the next
        one (``b``, ``b_value``), as the log holds them now."""
        delta = counter_delta(a_value, b_value, self._max, self._window)
        if self._max_rate is None or self._plausible(delta, b - a):
            return CountDelta(a, b, delta)
        # The counter may have been standing at this value long before ``a`` (republished
        # unchanged, e.g. in a birth after a reconnect): the production took place since it
        # last changed, so that is the time the bound allows for.
        since = self._unchanged_since(index)
        if self._plausible(delta, b - since):
            return CountDelta(a, b, delta)
        return CountDelta(a, b, 0, dropped=delta)

    def _plausible(self, delta: int, elapsed_ms: int) -> bool:
        """``delta <= max_units_per_ms * elapsed_ms + IMPLAUSIBLE_SLACK``, in integers."""
        return (delta - IMPLAUSIBLE_SLACK) * self._rate_den <= self._rate_num * elapsed_ms

    def _unchanged_since(self, index: int) -> int:
        """The earliest sample time from which the counter read what it reads at position
        ``index``."""
        log = self._log
        value = log.value_at(index)
        stop = max(0, index - _UNCHANGED_LOOKBACK)
        while index > stop and log.value_at(index - 1) == value:
            index -= 1
        return log.ts_at(index)

    def apply(self, samples: Iterable[CounterSample]) -> CountChanges:
        """Add samples; returns the deltas that disappeared and appeared. A sample contradicting
        a known one at the same instant, or out of range, rejects the whole batch."""
        log = self._log
        last = self._last
        fresh: dict[int, int] = {}
        for sample in samples:
            ts, value = sample.ts_ms, sample.value
            if not 0 <= value <= self._max:
                raise DomainError(f"counter value {value} is outside 0..{self._max}")
            known = None if last is None or ts > last[0] else log.get(ts)
            if known is None:
                known = fresh.get(ts)
            if known is None:
                fresh[ts] = value
            elif known != value:
                raise DomainError(f"conflicting counter values at {ts}: {known} and {value}")
        removed: list[CountDelta] = []
        added: list[CountDelta] = []
        size = len(log)
        for ts in sorted(fresh):
            value = fresh[ts]
            i = log.put(ts, value)  # a new instant: inserted at i
            size += 1
            if i == size - 1:  # after the last one (live data): one new delta, from the last
                if last is not None:
                    added.append(self._delta(i - 1, last[0], last[1], ts, value))
                self._last = last = (ts, value)
                continue
            if i > 0:
                before, before_value = log.ts_at(i - 1), log.value_at(i - 1)
                after, after_value = log.ts_at(i + 1), log.value_at(i + 1)
                gone = self._delta(i - 1, before, before_value, after, after_value)
                if gone in added:
                    added.remove(gone)  # created by this same batch: never persisted
                else:
                    removed.append(gone)
                added.append(self._delta(i - 1, before, before_value, ts, value))
            added.append(self._delta(i, ts, value, log.ts_at(i + 1), log.value_at(i + 1)))
        return CountChanges(tuple(removed), tuple(added))

    def __len__(self) -> int:
        return len(self._log)

    def prune_before(self, ts_ms: int) -> None:
        """Forget the values before the last one at or before ``ts_ms``: the deltas ending at
        or after it stay as they are (the service then ignores older samples)."""
        self._log.drop_first(max(self._log.index_at_or_before(ts_ms), 0))


@dataclass(frozen=True, slots=True)
class ProductionCounts:
    """Infeed = outfeed + waste. Build with ``from_any_two`` when one of them is not measured."""

    infeed: int
    outfeed: int
    waste: int

    def __post_init__(self) -> None:
        if min(self.infeed, self.outfeed, self.waste) < 0:
            raise DomainError(f"counts cannot be negative: {self}")
        if self.outfeed + self.waste != self.infeed:
            raise DomainError(
                f"infeed {self.infeed} != outfeed {self.outfeed} + waste {self.waste}"
            )

    @classmethod
    def from_any_two(
        cls, *, infeed: int | None = None, outfeed: int | None = None, waste: int | None = None
    ) -> ProductionCounts:
        given = sum(v is not None for v in (infeed, outfeed, waste))
        if given < 2:
            raise DomainError("two of infeed, outfeed and waste are needed to know the third")
        for name, value in (("infeed", infeed), ("outfeed", outfeed), ("waste", waste)):
            if value is not None and value < 0:
                raise DomainError(f"{name} cannot be negative: {value}")
        if infeed is None:
            assert outfeed is not None
            assert waste is not None
            return cls(outfeed + waste, outfeed, waste)
        if outfeed is None:
            assert waste is not None
            if waste > infeed:
                raise DomainError(f"waste {waste} exceeds infeed {infeed}")
            return cls(infeed, infeed - waste, waste)
        if waste is None:
            if outfeed > infeed:
                raise DomainError(f"outfeed {outfeed} exceeds infeed {infeed}")
            return cls(infeed, outfeed, infeed - outfeed)
        return cls(infeed, outfeed, waste)


class CountRecord(Protocol):
    """What OEE and rollups read of a count: a ``ProducedCount`` or a signed correction."""

    @property
    def asset(self) -> AssetPath: ...

    @property
    def ts_ms(self) -> int: ...

    @property
    def total(self) -> int: ...

    @property
    def reject(self) -> int: ...

    @property
    def startup(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class ProducedCount:
    """What OEE consumes: ``total`` pieces (infeed) of which ``reject`` (waste) seen at ``ts_ms``.
    ``startup`` marks rejects made while starting up (the service decides, e.g. during a
    changeover mode or the first minutes of a run); they are a separate six-big-losses item."""

    asset: AssetPath
    ts_ms: int
    total: int
    reject: int = 0
    startup: bool = False

    def __post_init__(self) -> None:
        if self.total < 0 or self.reject < 0:
            raise DomainError(f"counts cannot be negative: total={self.total} reject={self.reject}")
        if self.reject > self.total:
            raise DomainError(f"reject count {self.reject} exceeds total {self.total}")

    @property
    def good(self) -> int:
        return self.total - self.reject
