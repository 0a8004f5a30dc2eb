"""Freezing what start-up leaves alive out of the garbage collector's sight."""

from __future__ import annotations

import gc
import weakref

from andon.server.long_lived import (
    YOUNG_COLLECTION_THRESHOLD,
    collect_young_less_often,
    freeze_long_lived_objects,
)


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_freeze_collects_start_up_garbage_then_freezes_what_lives_on() -> None:
    kept = [[index] for index in range(1_000)]  # containers the collector tracks
    garbage = _Node()
    before = weakref.ref(garbage)
    del garbage
    try:
        frozen = freeze_long_lived_objects()
        assert before() is None  # collected first: garbage is not frozen forever
        assert frozen == gc.get_freeze_count() >= len(kept)
        later = _Node()  # what the running server allocates is collected as usual
        after = weakref.ref(later)
        del later
        gc.collect()
        assert after() is None
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0


def test_young_collections_are_made_rarer_and_the_older_ratios_kept() -> None:
    before = gc.get_threshold()
    try:
        returned = collect_young_less_often(12_345)
        assert returned == before
        assert gc.get_threshold() == (12_345, before[1], before[2])
        assert collect_young_less_often() == (12_345, before[1], before[2])
        assert gc.get_threshold()[0] == YOUNG_COLLECTION_THRESHOLD
    finally:
        gc.set_threshold(*before)
