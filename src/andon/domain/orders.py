"""Items, ideal rates, production orders with their lifecycle, runs and scheduled runs.

A run is an order executing on an asset from ``start_ms`` to ``end_ms`` (``None``: still running,
which for the overlap rule extends to +infinity). Runs on one asset never overlap; touching is
fine (one run's end == the next one's start). Scheduled runs follow the same rule among
themselves, independently of actual runs.
"""

from __future__ import annotations

import enum
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Generic, TypeVar

from andon.domain.assets import AssetPath
from andon.domain.errors import DomainError

__all__ = [
    "IdealCycleResolver",
    "IdealRate",
    "IdealRates",
    "Item",
    "OrderState",
    "ProductionOrder",
    "Run",
    "RunBook",
    "Schedule",
    "ScheduledRun",
]


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class IdealRate:
    """The ideal (nameplate) speed of an item on an asset, kept as an exact cycle time in ms."""

    item_id: str
    asset: AssetPath
    cycle_time_ms: Fraction

    def __post_init__(self) -> None:
        if self.cycle_time_ms <= 0:
            raise DomainError(f"ideal cycle time of {self.item_id} on {self.asset} must be > 0")

    @classmethod
    def per_minute(
        cls, item_id: str, asset: AssetPath, units_per_minute: float | Fraction
    ) -> IdealRate:
        if units_per_minute <= 0:
            raise DomainError(f"ideal rate of {item_id} on {asset} must be > 0 units/min")
        return cls(item_id, asset, Fraction(60_000) / Fraction(units_per_minute))

    @classmethod
    def cycle_seconds(cls, item_id: str, asset: AssetPath, seconds: float | Fraction) -> IdealRate:
        return cls(item_id, asset, Fraction(seconds) * 1000)

    @property
    def units_per_minute(self) -> Fraction:
        return Fraction(60_000) / self.cycle_time_ms


class IdealRates:
    def __init__(self, rates: Iterable[IdealRate] = ()) -> None:
        self._rates: dict[tuple[str, AssetPath], IdealRate] = {}
        for rate in rates:
            self.set(rate)

    def set(self, rate: IdealRate) -> None:
        self._rates[(rate.item_id, rate.asset)] = rate

    def cycle_time_ms(self, item_id: str, asset: AssetPath) -> Fraction | None:
        rate = self._rates.get((item_id, asset))
        return None if rate is None else rate.cycle_time_ms

    def fastest_units_per_ms(self, asset: AssetPath) -> Fraction | None:
        """The highest ideal rate of any item on ``asset`` (units/ms), None without rates."""
        cycles = [r.cycle_time_ms for (_, a), r in self._rates.items() if a == asset]
        return 1 / min(cycles) if cycles else None


class OrderState(enum.Enum):
    PLANNED = "planned"
    RELEASED = "released"
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


_ALLOWED = {
    OrderState.PLANNED: {OrderState.RELEASED, OrderState.CANCELLED},
    OrderState.RELEASED: {OrderState.PLANNED, OrderState.RUNNING, OrderState.CANCELLED},
    # Back to RELEASED pauses an order that will run again later (e.g. on another line).
    OrderState.RUNNING: {OrderState.RELEASED, OrderState.COMPLETED, OrderState.CANCELLED},
    OrderState.COMPLETED: set(),
    OrderState.CANCELLED: set(),
}


@dataclass(frozen=True, slots=True)
class ProductionOrder:
    id: str
    item_id: str
    quantity: int
    state: OrderState = OrderState.PLANNED

    def __post_init__(self) -> None:
        if self.quantity <= 0:
            raise DomainError(f"order {self.id}: quantity must be positive, got {self.quantity}")

    def transition(self, to: OrderState) -> ProductionOrder:
        if to not in _ALLOWED[self.state]:
            allowed = ", ".join(sorted(s.value for s in _ALLOWED[self.state])) or "none (final)"
            raise DomainError(
                f"order {self.id}: cannot go from {self.state.value} to "
                f"{to.value}; allowed: {allowed}"
            )
        return replace(self, state=to)


@dataclass(frozen=True, slots=True)
class Run:
    id: str
    order_id: str
    asset: AssetPath
    start_ms: int
    end_ms: int | None = None

    def __post_init__(self) -> None:
        if self.end_ms is not None and self.end_ms <= self.start_ms:
            raise DomainError(
                f"run {self.id}: end {self.end_ms} must be after start {self.start_ms}"
            )


@dataclass(frozen=True, slots=True)
class ScheduledRun:
    id: str
    order_id: str
    asset: AssetPath
    start_ms: int  # planned start
    end_ms: int  # planned end

    def __post_init__(self) -> None:
        if self.end_ms <= self.start_ms:
            raise DomainError(f"scheduled run {self.id}: end must be after start")


_INF = float("inf")
Span = TypeVar("Span", Run, ScheduledRun)


class _SpanBook(Generic[Span]):
    """Non-overlapping spans of one asset, sorted by start (so also by end)."""

    def __init__(self, asset: AssetPath, what: str) -> None:
        self.asset = asset
        self._what = what
        self._by_id: dict[str, Span] = {}
        self._sorted: list[Span] = []

    def __iter__(self) -> Iterator[Span]:
        return iter(tuple(self._sorted))

    def __len__(self) -> int:
        return len(self._sorted)

    def get(self, span_id: str) -> Span:
        try:
            return self._by_id[span_id]
        except KeyError:
            raise DomainError(f"{self.asset}: unknown {self._what} {span_id!r}") from None

    def add(self, span: Span) -> Span:
        if span.asset != self.asset:
            raise DomainError(f"{self._what} {span.id} is for {span.asset}, not {self.asset}")
        if span.id in self._by_id:
            raise DomainError(f"{self.asset}: {self._what} {span.id!r} already exists")
        self._check_free(span, ignore=None)
        self._insert(span)
        return span

    def replace(self, span: Span) -> Span:
        old = self.get(span.id)
        if span.asset != self.asset:
            raise DomainError(f"{self._what} {span.id} cannot move to another asset")
        self._check_free(span, ignore=old)
        self._remove(old)
        self._insert(span)
        return span

    def delete(self, span_id: str) -> Span:
        old = self.get(span_id)
        self._remove(old)
        return old

    def overlapping(self, start_ms: int, end_ms: float) -> tuple[Span, ...]:
        """Spans overlapping [start_ms, end_ms); open spans extend to +infinity."""
        return tuple(s for s in self._sorted if s.start_ms < end_ms and _end(s) > start_ms)

    def at(self, ts_ms: int) -> Span | None:
        i = bisect_left([s.start_ms for s in self._sorted], ts_ms + 1) - 1
        if i >= 0 and _end(self._sorted[i]) > ts_ms:
            return self._sorted[i]
        return None

    def _check_free(self, span: Span, ignore: Span | None) -> None:
        for other in self.overlapping(span.start_ms, _end(span)):
            if other is not ignore:
                end = "open" if other.end_ms is None else other.end_ms
                raise DomainError(
                    f"{self.asset}: {self._what} {span.id!r} [{span.start_ms}, "
                    f"{'open' if span.end_ms is None else span.end_ms}) overlaps {self._what} "
                    f"{other.id!r} [{other.start_ms}, {end}); runs on one asset cannot overlap"
                )

    def _insert(self, span: Span) -> None:
        self._by_id[span.id] = span
        i = bisect_left([s.start_ms for s in self._sorted], span.start_ms)
        self._sorted.insert(i, span)

    def _remove(self, span: Span) -> None:
        del self._by_id[span.id]
        self._sorted.remove(span)


def _end(span: Run | ScheduledRun) -> float:
    return _INF if span.end_ms is None else span.end_ms


class RunBook(_SpanBook[Run]):
    """The actual runs of one asset."""

    def __init__(self, asset: AssetPath, runs: Iterable[Run] = ()) -> None:
        super().__init__(asset, "run")
        for run in runs:
            self.add(run)

    def end(self, run_id: str, end_ms: int) -> Run:
        run = self.get(run_id)
        if run.end_ms is not None:
            raise DomainError(f"{self.asset}: run {run_id!r} has already ended at {run.end_ms}")
        return self.replace(replace(run, end_ms=end_ms))

    def edit(self, run_id: str, start_ms: int, end_ms: int | None) -> Run:
        return self.replace(replace(self.get(run_id), start_ms=start_ms, end_ms=end_ms))

    def run_at(self, ts_ms: int) -> Run | None:
        return self.at(ts_ms)

    @property
    def open_run(self) -> Run | None:
        last = self._sorted[-1] if self._sorted else None
        return last if last is not None and last.end_ms is None else None


class Schedule(_SpanBook[ScheduledRun]):
    """The scheduled (planned) runs of one asset."""

    def __init__(self, asset: AssetPath, runs: Iterable[ScheduledRun] = ()) -> None:
        super().__init__(asset, "scheduled run")
        for run in runs:
            self.add(run)

    def edit(self, run_id: str, start_ms: int, end_ms: int) -> ScheduledRun:
        return self.replace(replace(self.get(run_id), start_ms=start_ms, end_ms=end_ms))


class IdealCycleResolver:
    """``oee.CycleTimeLookup`` from runs: the run on the asset at that instant → its order's item
    → the item's ideal cycle time on that asset. None outside runs or without a rate."""

    def __init__(
        self,
        run_books: Mapping[AssetPath, RunBook],
        item_of_order: Mapping[str, str],
        rates: IdealRates,
    ) -> None:
        self._books = run_books
        self._items = item_of_order
        self._rates = rates

    def __call__(self, asset: AssetPath, ts_ms: int) -> Fraction | None:
        book = self._books.get(asset)
        run = None if book is None else book.run_at(ts_ms)
        item = None if run is None else self._items.get(run.order_id)
        return None if item is None else self._rates.cycle_time_ms(item, asset)
