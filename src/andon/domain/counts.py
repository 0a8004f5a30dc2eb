"""Production counts: PLC counter samples to deltas (wrap and reset), infeed/outfeed/waste.

Wrap versus reset (``counter_delta``): when a counter reads lower than before, either it passed
its maximum and started again from 0 (wrap), or someone zeroed it (reset, typically at a
changeover) and it has counted ``curr`` since. A wrap between two samples taken a second or a
minute apart only advances the counter by a small part of its range, so the heuristic is: if the
delta implied by a wrap, ``counter_max - prev + 1 + curr``, is below ``wrap_window`` (default a
quarter of the range) it is a wrap, otherwise a reset and the delta is ``curr``. The only wrong
answer is a reset while the counter was within ``wrap_window`` of its maximum; the error is then
``counter_max - prev + 1`` units at most.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass

from andon.domain.assets import AssetPath
from andon.domain.errors import DomainError

__all__ = [
    "CountChanges",
    "CountDelta",
    "CountSeries",
    "CounterSample",
    "ProducedCount",
    "ProductionCounts",
    "counter_delta",
]


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


@dataclass(frozen=True, slots=True)
class CountChanges:
    removed: tuple[CountDelta, ...] = ()
    added: tuple[CountDelta, ...] = ()


class CountSeries:
    """Deltas of one counter; samples may arrive in any order and any number of times."""

    def __init__(self, counter_max: int, wrap_window: int | None = None) -> None:
        if counter_max <= 0:
            raise DomainError(f"counter_max must be positive, got {counter_max}")
        self._max = counter_max
        self._window = wrap_window
        self._values: dict[int, int] = {}
        self._ts: list[int] = []

    @property
    def deltas(self) -> tuple[CountDelta, ...]:
        return tuple(self._delta(a, b) for a, b in zip(self._ts, self._ts[1:], strict=False))

    def _delta(self, a: int, b: int) -> CountDelta:
        return CountDelta(
            a, b, counter_delta(self._values[a], self._values[b], self._max, self._window)
        )

    def apply(self, samples: Iterable[CounterSample]) -> CountChanges:
        """Add samples; returns the deltas that disappeared and appeared. A sample contradicting
        a known one at the same instant, or out of range, rejects the whole batch."""
        fresh: dict[int, int] = {}
        for sample in samples:
            if not 0 <= sample.value <= self._max:
                raise DomainError(f"counter value {sample.value} is outside 0..{self._max}")
            known = self._values.get(sample.ts_ms, fresh.get(sample.ts_ms))
            if known is None:
                fresh[sample.ts_ms] = sample.value
            elif known != sample.value:
                raise DomainError(
                    f"conflicting counter values at {sample.ts_ms}: {known} and {sample.value}"
                )
        removed: list[CountDelta] = []
        added: list[CountDelta] = []
        for ts in sorted(fresh):
            i = bisect_left(self._ts, ts)
            before = self._ts[i - 1] if i > 0 else None
            after = self._ts[i] if i < len(self._ts) else None
            self._values[ts] = fresh[ts]
            self._ts.insert(i, ts)
            if before is not None and after is not None:
                gone = self._delta(before, after)
                if gone in added:
                    added.remove(gone)  # created by this same batch: never persisted
                else:
                    removed.append(gone)
            if before is not None:
                added.append(self._delta(before, ts))
            if after is not None:
                added.append(self._delta(ts, after))
        return CountChanges(tuple(removed), tuple(added))


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
