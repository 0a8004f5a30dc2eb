"""Keep the garbage collector off what a started server holds for its whole life.

CPython's full (generation 2) collection walks every tracked object. A started server holds a
great many that live as long as it does: modules, the web app, the plant model, the MES history
reloaded at start. A full collection is triggered by allocation, so it lands inside whatever
request or batch happens to allocate at that moment: in ``andon bench query`` four of ten
hourly trend calls of a year took 44 ms longer, each one a full collection; after a freeze the
same collections took under 3 ms (docs/benchmarks.md, "query").

``gc.freeze`` moves every object alive now to a permanent generation that collections skip.
Objects frozen are still freed by reference counting when they are let go; only reference
cycles among them are never collected, which is why this is done once, when start-up's objects
are the ones that live on. A process entry point calls it (not ``MesServer``: a test process
starting many servers must keep collecting their cycles).

The same entry points also make young collections rarer. CPython collects its youngest
generation every 700 net container allocations; a server ingesting a plant allocates tens of
thousands a second (a tuple per value), so it collected about 90 times a second, and whatever
was still queued for the historian at that moment (a second's worth of samples) survived two
young collections and was promoted to the oldest generation, where it counts towards the next
full collection. In ``andon bench scale`` (1,000 assets x 25 tags a second) the collector took
0.065 of a core that way, a full collection every 1.4 s. With a young threshold of 50,000 the
samples are freed before they are promoted: 0.011 of a core, at the price of a young collection
of some 35 ms every few seconds (docs/benchmarks.md, "scale").
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG_COLLECTION_THRESHOLD", "collect_young_less_often", "freeze_long_lived_objects"]

#: Net container allocations between two collections of the youngest generation (CPython: 700).
YOUNG_COLLECTION_THRESHOLD = 50_000


def freeze_long_lived_objects() -> int:
    """Collect what start-up left behind, then freeze the rest; returns the objects frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def collect_young_less_often(threshold: int = YOUNG_COLLECTION_THRESHOLD) -> tuple[int, int, int]:
    """Collect the youngest generation every ``threshold`` net allocations (the older
    generations' ratios unchanged); returns the thresholds that were in force."""
    before = gc.get_threshold()
    gc.set_threshold(threshold, before[1], before[2])
    return before
