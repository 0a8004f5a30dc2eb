"""The live tag table: the current value of every tag the host has seen.

Fed by the ingest pipeline (one thread), read by the API and the web UI (many threads). A live
value is only ever replaced by a *newer* one: historical (store-and-forward) values and late
duplicates go to the historian, never here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

__all__ = ["LiveTag", "LiveTagTable", "LiveUpdate"]


class LiveTag(NamedTuple):
    path: str
    value: bool | int | float | str | bytes | tuple[object, ...] | None
    datatype: int
    quality: str  # GOOD, BAD or STALE
    source_ts_ms: int
    receive_ts_ms: int
    online: bool = True

    @property
    def stale(self) -> bool:
        return self.quality == "STALE" or not self.online


class LiveUpdate(NamedTuple):
    path: str
    value: bool | int | float | str | bytes | tuple[object, ...] | None
    datatype: int
    quality: str
    source_ts_ms: int
    receive_ts_ms: int


ChangeListener = Callable[[Sequence[LiveTag]], None]


class LiveTagTable:
    def __init__(self) -> None:
        self._tags: dict[str, LiveTag] = {}
        self._lock = threading.Lock()
        self._listeners: list[ChangeListener] = []
        self.version = 0

    def apply(self, updates: Iterable[LiveUpdate | LiveTag]) -> list[LiveTag]:
        """Apply current values; an update older than the held value is ignored.

        Ingest passes ``LiveTag``\\ s (online) ready to hold, sparing a copy per value.
        Returns the tags that changed, after notifying listeners.
        """
        changed: list[LiveTag] = []
        tags = self._tags
        with self._lock:
            for update in updates:
                path = update[0]
                held = tags.get(path)
                if held is not None and update[4] < held[4]:  # source_ts_ms
                    continue
                # LiveUpdate has LiveTag's fields in the same order, online=True.
                tag = update if type(update) is LiveTag else LiveTag(*update)
                tags[path] = tag
                changed.append(tag)
            if changed:
                self.version += 1
            listeners = list(self._listeners)
        self._notify(listeners, changed)
        return changed

    def mark_stale(self, prefix: str, names: Iterable[str] | None, at_ms: int) -> list[LiveTag]:
        """Mark tags under ``prefix`` STALE and offline (death certificates).

        ``names`` limits it to those metric names below the prefix; ``None`` means every tag
        below it.
        """
        wanted = None if names is None else {f"{prefix}/{name}" for name in names}
        changed: list[LiveTag] = []
        with self._lock:
            for path, tag in self._tags.items():
                in_scope = path in wanted if wanted is not None else path.startswith(prefix + "/")
                if in_scope and not tag.stale:
                    stale = tag._replace(quality="STALE", online=False, receive_ts_ms=at_ms)
                    self._tags[path] = stale
                    changed.append(stale)
            if changed:
                self.version += 1
            listeners = list(self._listeners)
        self._notify(listeners, changed)
        return changed

    def get(self, path: str) -> LiveTag | None:
        with self._lock:
            return self._tags.get(path)

    def snapshot(self, prefix: str = "") -> list[LiveTag]:
        with self._lock:
            tags = [t for p, t in self._tags.items() if p.startswith(prefix)]
        return sorted(tags, key=lambda t: t.path)

    def __len__(self) -> int:
        with self._lock:
            return len(self._tags)

    def add_listener(self, listener: ChangeListener) -> Callable[[], None]:
        """Call ``listener`` with every batch of changes; returns a function that removes it.

        Listeners run on the ingest thread and must only hand the changes over (e.g. with
        ``loop.call_soon_threadsafe``).
        """
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    @staticmethod
    def _notify(listeners: list[ChangeListener], changed: list[LiveTag]) -> None:
        if not changed:
            return
        for listener in listeners:
            listener(changed)
