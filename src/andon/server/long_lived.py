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
"""

from __future__ import annotations

import gc

__all__ = ["freeze_long_lived_objects"]


def freeze_long_lived_objects() -> int:
    """Collect what start-up left behind, then freeze the rest; returns the objects frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
