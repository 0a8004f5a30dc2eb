"""Freezing what start-up leaves alive out of the garbage collector's sight."""

from __future__ import annotations

import gc
import weakref

from andon.server.long_lived import freeze_long_lived_objects


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
