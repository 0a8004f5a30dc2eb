"""Count edits: a supervisor corrects the infeed, outfeed and waste of an asset over a period.

An edit never touches the counts derived from the PLC; it adds signed *corrections*. What it asks
for is resolved against the period's current figures (derived counts plus the corrections of
earlier edits still in force) into one change (``resolve_change``):

* ``set`` gives the period's new figures, ``add`` what to add to them (negative to remove);
* infeed = outfeed + waste always; fields not given follow from the given ones: with two given the
  third follows; with infeed or outfeed alone, waste stays as it is (more or fewer pieces, all
  good); with waste alone, infeed stays (good pieces turn out to be scrap);
* the result must have no negative figure, so good (outfeed) is never above total (infeed).

The change is then spread over the period's *segments*, cut at every local hour and every shift
start and end, so that hour and shift figures split exactly (``plan_corrections``). Good and waste
are spread separately, each in proportion to what the segments already hold (a uniform share of
time when they hold none), with exact integer shares (largest remainder): removing units never
takes a segment below zero. Each segment's share is one ``CountCorrection`` attributed to the
segment's first instant, like a count seen then.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from andon.domain.assets import AssetPath
from andon.domain.calendar import ShiftCalendar, hour_bucket_start, next_hour_boundary
from andon.domain.errors import DomainError

__all__ = [
    "CountCorrection",
    "CountEdit",
    "CountEditError",
    "CountEditMode",
    "CountTriple",
    "apportion",
    "edit_boundaries",
    "plan_corrections",
    "resolve_change",
]


class CountEditError(DomainError):
    """The edit asked for something impossible (negative figures, good above total, ...)."""


class CountEditMode(enum.Enum):
    SET = "set"
    ADD = "add"


@dataclass(frozen=True, slots=True)
class CountTriple:
    """Infeed, outfeed and waste (figures or changes of them): infeed = outfeed + waste."""

    infeed: int
    outfeed: int
    waste: int

    def __post_init__(self) -> None:
        if self.infeed != self.outfeed + self.waste:
            raise CountEditError(
                f"infeed {self.infeed} is not outfeed {self.outfeed} + waste {self.waste}"
            )

    @classmethod
    def of(cls, good: int, reject: int) -> CountTriple:
        return cls(good + reject, good, reject)

    def __add__(self, other: CountTriple) -> CountTriple:
        return CountTriple(
            self.infeed + other.infeed, self.outfeed + other.outfeed, self.waste + other.waste
        )

    def __sub__(self, other: CountTriple) -> CountTriple:
        return CountTriple(
            self.infeed - other.infeed, self.outfeed - other.outfeed, self.waste - other.waste
        )

    @property
    def is_zero(self) -> bool:
        return self.infeed == self.outfeed == self.waste == 0


@dataclass(frozen=True, slots=True)
class CountCorrection:
    """Signed units one count edit adds at ``ts_ms``: ``total`` (infeed) of which ``reject``
    (waste). Read by OEE and rollups like a ``ProducedCount``."""

    asset: AssetPath
    ts_ms: int
    total: int
    reject: int
    edit_id: int = 0
    startup: bool = False

    @property
    def good(self) -> int:
        return self.total - self.reject


@dataclass(frozen=True, slots=True)
class CountEdit:
    """A stored edit: what was asked (``requested``, None fields not given), the change it made
    (``change``), who and why; ``reverted_ms`` once taken back."""

    id: int
    asset: AssetPath
    start_ms: int
    end_ms: int
    mode: CountEditMode
    requested: tuple[int | None, int | None, int | None]  # infeed, outfeed, waste
    change: CountTriple
    username: str
    comment: str
    created_ms: int
    reverted_ms: int | None = None
    reverted_by: str | None = None

    @property
    def active(self) -> bool:
        return self.reverted_ms is None


def _complete(
    infeed: int | None, outfeed: int | None, waste: int | None, keep: CountTriple
) -> CountTriple:
    """The full triple from the given fields; ``keep`` supplies what stays (see the module)."""
    if infeed is not None and outfeed is not None and waste is not None:
        if infeed != outfeed + waste:
            raise CountEditError(
                f"infeed {infeed} is not outfeed {outfeed} + waste {waste}; give two of them"
            )
        return CountTriple(infeed, outfeed, waste)
    if infeed is not None and outfeed is not None:
        return CountTriple(infeed, outfeed, infeed - outfeed)
    if infeed is not None and waste is not None:
        return CountTriple(infeed, infeed - waste, waste)
    if outfeed is not None and waste is not None:
        return CountTriple(outfeed + waste, outfeed, waste)
    if infeed is not None:
        return CountTriple(infeed, infeed - keep.waste, keep.waste)
    if outfeed is not None:
        return CountTriple(outfeed + keep.waste, outfeed, keep.waste)
    if waste is not None:
        return CountTriple(keep.infeed, keep.infeed - waste, waste)
    raise CountEditError("give infeed, outfeed or waste")


def _check_result(result: CountTriple) -> None:
    # With infeed = outfeed + waste, no negative figure also means good is never above total.
    if result.infeed < 0:
        raise CountEditError(f"infeed would be {result.infeed} over the period (below zero)")
    if result.waste < 0:
        raise CountEditError(
            f"waste would be {result.waste} over the period: good {result.outfeed} above "
            f"total {result.infeed}"
        )
    if result.outfeed < 0:
        raise CountEditError(
            f"waste {result.waste} would be above infeed {result.infeed} over the period "
            "(good cannot be below zero)"
        )


def resolve_change(
    mode: CountEditMode,
    current: CountTriple,
    infeed: int | None = None,
    outfeed: int | None = None,
    waste: int | None = None,
) -> CountTriple:
    """The change an edit makes to the period's ``current`` figures; CountEditError when the
    request is incomplete, contradictory, changes nothing or leaves a negative figure."""
    if mode is CountEditMode.SET:
        for name, value in (("infeed", infeed), ("outfeed", outfeed), ("waste", waste)):
            if value is not None and value < 0:
                raise CountEditError(f"{name}: a figure cannot be negative ({value})")
        result = _complete(infeed, outfeed, waste, current)
        _check_result(result)
        change = result - current
    else:
        change = _complete(infeed, outfeed, waste, CountTriple(0, 0, 0))
        _check_result(current + change)
    if change.is_zero:
        raise CountEditError(
            f"nothing to change: the period already has infeed {current.infeed}, outfeed "
            f"{current.outfeed}, waste {current.waste}"
        )
    return change


def edit_boundaries(
    start_ms: int, end_ms: int, zone: ZoneInfo, calendar: ShiftCalendar | None
) -> list[int]:
    """[start_ms, end_ms) cut at every local hour and every shift start and end: the instants
    ``plan_corrections`` spreads a change over (first the start, last the end)."""
    if end_ms <= start_ms:
        raise CountEditError("end must be after start")
    cuts = {start_ms, end_ms}
    cursor = hour_bucket_start(start_ms, zone)
    while cursor < end_ms:
        cursor = next_hour_boundary(cursor, zone)
        if start_ms < cursor < end_ms:
            cuts.add(cursor)
    if calendar is not None:
        for shift in calendar.shifts_between(start_ms, end_ms):
            cuts.update(t for t in (shift.start_ms, shift.end_ms) if start_ms < t < end_ms)
    return sorted(cuts)


def apportion(amount: int, weights: Sequence[int]) -> list[int]:
    """``amount`` split into integer shares proportional to ``weights`` (>= 0, not all 0) whose
    sum is exactly ``amount`` (largest remainder, ties to the earlier share). When ``-amount``
    is at most the sum of the weights, no share is below ``-weight``."""
    whole = sum(weights)
    if whole <= 0 or min(weights) < 0:
        raise CountEditError("apportion needs non-negative weights with a positive sum")
    sign, size = (1, amount) if amount >= 0 else (-1, -amount)
    shares = [size * w // whole for w in weights]
    rests = [size * w % whole for w in weights]
    left = size - sum(shares)
    for i in sorted(range(len(weights)), key=lambda i: (-rests[i], i))[:left]:
        shares[i] += 1
    return [sign * share for share in shares]


def plan_corrections(
    asset: AssetPath,
    boundaries: Sequence[int],
    existing: Sequence[CountTriple],
    change: CountTriple,
) -> list[CountCorrection]:
    """The corrections that make ``change`` over the segments between ``boundaries``, which
    hold ``existing`` (one triple per segment); CountEditError if a segment would go below zero."""
    if len(existing) != len(boundaries) - 1 or not existing:
        raise CountEditError("one existing figure per segment is needed")
    durations = [b - a for a, b in itertools.pairwise(boundaries)]
    parts = []
    for amount, held in (
        (change.outfeed, [max(e.outfeed, 0) for e in existing]),
        (change.waste, [max(e.waste, 0) for e in existing]),
    ):
        parts.append(apportion(amount, held if sum(held) > 0 else durations))
    corrections = []
    for i, (good, reject) in enumerate(zip(parts[0], parts[1], strict=True)):
        after = existing[i] + CountTriple.of(good, reject)
        if after.outfeed < 0 or after.waste < 0:
            raise CountEditError(
                f"the change would leave outfeed {after.outfeed}, waste {after.waste} from "
                f"{boundaries[i]} to {boundaries[i + 1]} (below zero)"
            )
        if good or reject:
            corrections.append(CountCorrection(asset, boundaries[i], good + reject, reject))
    return corrections
