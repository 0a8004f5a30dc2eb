"""Builders shared by the domain tests (a plain module, imported by the test files)."""

from __future__ import annotations

from datetime import date, time
from zoneinfo import ZoneInfo

from andon.domain import (
    AssetPath,
    IntervalBuilder,
    IntervalChanges,
    ModeSample,
    StateDefinition,
    StateInterval,
    StateMap,
    StateSample,
    StateType,
)
from andon.domain.calendar import local_to_utc_ms

MIN = 60_000
FILLER = AssetPath.parse("Acme/Plant1/Bottling/Line1/Filler1")
PRAGUE = ZoneInfo("Europe/Prague")
RUNNING, STOPPED, FAULT, BLOCKED, STARVED, CHANGEOVER_CODE = 1, 2, 10, 3, 4, 5

STATE_MAP = StateMap(
    [
        StateDefinition(RUNNING, "Running", StateType.RUNNING),
        StateDefinition(STOPPED, "Stopped", StateType.UNPLANNED_DOWNTIME),
        StateDefinition(FAULT, "Jam", StateType.UNPLANNED_DOWNTIME, default_reason="jam"),
        StateDefinition(BLOCKED, "Blocked", StateType.BLOCKED),
        StateDefinition(STARVED, "Starved", StateType.STARVED),
        StateDefinition(CHANGEOVER_CODE, "Changeover", StateType.SETUP),
    ]
)


def at(day: date, hh: int, mm: int = 0) -> int:
    return local_to_utc_ms(day, time(hh, mm), PRAGUE)


def derive(
    samples: list[tuple[int, int]], modes: list[ModeSample] | None = None
) -> tuple[StateInterval, ...]:
    builder = IntervalBuilder(FILLER, STATE_MAP)
    builder.apply([StateSample(ts, code) for ts, code in samples], modes or [])
    return builder.intervals


def apply_changes(changes: IntervalChanges, store: set[StateInterval]) -> None:
    """What a service does with a builder's changes: delete the removed rows, insert the added
    ones (an added row must not be there already)."""
    for interval in changes.removed:
        store.remove(interval)
    for interval in changes.added:
        assert interval not in store
        store.add(interval)
