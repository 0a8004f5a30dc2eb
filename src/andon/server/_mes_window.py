"""The in-memory window of the MES service: what each asset's builders hold.

*Loading.* A builder is (re)filled from stored records without persisting anything: the stored
intervals give the PLC code at each start (except inside a state added by hand, where the stored
code is the added one: there the PLC's own codes come from the history, so that taking the added
state back shows what the PLC said), the mode at each start, and, with ``restore_edits``, the
manual splits and reasons. The service does it at start (``seed``) and on demand when an edit
reaches before the window (an interval older than the horizon).

*Pruning.* What late data can no longer touch is forgotten: everything before the interval that
contains ``now - horizon`` (and counter values and deltas before that instant). Samples older
than the kept floor are then not derived (logged and counted, like samples older than the seeded
history); anything after it is derived exactly as if nothing had been pruned.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

from andon.domain import (
    AssetPath,
    DomainError,
    ModeSample,
    StateInterval,
    StateOverride,
    StateSample,
)
from andon.server._mes_derive import AssetState, apply_safely, restore_edits, to_int
from andon.storage.types import Sample

__all__ = [
    "HistoryLookup",
    "PagedHistory",
    "forget_intervals_before",
    "load_stored",
    "paged_history",
    "prune",
    "samples_under",
]

log = logging.getLogger("andon.server.mes_service")

#: The samples of one tag in [start_ms, end_ms), in time order (the historian's history).
HistoryLookup = Callable[[str, int, int], Iterable[Sample]]

_PAGE = 10_000


class PagedHistory(Protocol):
    def history(
        self, tag: str, start_ms: int, end_ms: int, limit: int = 10_000
    ) -> list[Sample]: ...


def paged_history(store: PagedHistory, tag: str, start_ms: int, end_ms: int) -> Iterator[Sample]:
    """Every sample of ``tag`` in [start_ms, end_ms), read page by page."""
    while start_ms < end_ms:
        page = store.history(tag, start_ms, end_ms, _PAGE)
        yield from page
        if len(page) < _PAGE:
            return
        start_ms = page[-1].ts_ms + 1


def samples_under(
    history: HistoryLookup | None, tag: str | None, added: Sequence[StateOverride]
) -> list[StateSample]:
    """The PLC's state codes inside the added states (empty without a history or a tag)."""
    if history is None or tag is None:
        return []
    return [
        StateSample(sample.ts_ms, code)
        for override in added
        for sample in history(tag, override.start_ms, override.end_ms)
        if (code := to_int(sample.value)) is not None
    ]


def load_stored(
    state: AssetState,
    asset: AssetPath,
    stored: Sequence[StateInterval],
    added: Sequence[StateOverride],
    plc: Sequence[StateSample],
) -> None:
    """Fill ``state``'s interval builder from stored records (see the module); the changes it
    reports are what the database already holds, so they are dropped."""
    builder = state.intervals
    added = sorted(
        (o for o in added if builder.override_at(o.start_ms) is None), key=lambda o: o.start_ms
    )
    starts = [o.start_ms for o in added]

    def under_added(ts_ms: int) -> bool:
        i = bisect_right(starts, ts_ms) - 1
        return i >= 0 and ts_ms < added[i].end_ms

    apply_safely(
        builder.apply,
        [StateSample(iv.start_ms, iv.code) for iv in stored if not under_added(iv.start_ms)],
        [ModeSample(iv.start_ms, iv.mode) for iv in stored],
        asset,
    )
    for override in added:
        try:
            builder.add_override(override)
        except DomainError as exc:  # a stored record the rules refuse: left out, and said
            log.warning("MES %s: the state added by hand at %d is not loaded: %s",
                        asset, override.start_ms, exc)  # fmt: skip
    apply_safely(builder.apply, list(plc), [], asset)
    restore_edits(builder, stored)


def prune(state: AssetState, cut_ms: int) -> None:
    """Forget what lies before ``cut_ms`` (see the module)."""
    forget_intervals_before(state, cut_ms)
    for series in state.series.values():
        series.prune_before(cut_ms)
    for sums in state.deltas:
        sums.drop_first(sums.index_at_or_before(cut_ms - 1) + 1)
    previous = state.counter_floor_ms
    state.counter_floor_ms = cut_ms if previous is None else max(previous, cut_ms)


def forget_intervals_before(state: AssetState, cut_ms: int) -> None:
    """The intervals part of ``prune``: also what an edit of older intervals loaded, forgotten
    again once the edit is stored (its counters were never reloaded)."""
    floor = state.intervals.prune_before(cut_ms)
    if floor is not None:
        # Strictly after the kept floor: a sample at the floor itself could merge the first
        # kept interval into one that is forgotten.
        previous = state.state_floor_ms
        state.state_floor_ms = floor + 1 if previous is None else max(previous, floor + 1)
