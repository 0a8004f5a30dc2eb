"""Manual edits of ``MesService`` (a mixin): interval edits and what every audited edit shares.

An edit first waits, *without* the service's lock, until the historian writer has stored what
was queued (ingest goes on meanwhile). Then, under the lock, it waits a short while for what
ingest queued since (so it reads the database as it is and nothing is derived meanwhile), reads
what it needs (one bounded query or aggregate each), and stores its change -- the records, the
rollup increments and the hooks writing the edit's own records and its audit entry -- as one
transaction of its own through the single writer (``andon.storage.mes_edit_outcome``): never
merged with ingest's changes, and it is that transaction's outcome, not a flush, that says
whether the edit is stored. A refused edit restores the memory it changed and is answered with
the reason. Once stored, the listeners (the UNS mirror, the web UI) hear of the assets it
changed.

Intervals older than the builders' window are read with one query (``interval_at``); only an
actual edit of one loads the stored intervals from there on (``load_window``), as far back as
``MesLimits.edit_max_age_days``, and forgets them again once the edit is stored.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from andon.domain import (
    AssetPath,
    DomainError,
    IntervalBuilder,
    IntervalChanges,
    RollupBuilder,
    StateInterval,
)
from andon.server._mes_derive import AssetState, increments
from andon.server._mes_window import (
    HistoryLookup,
    forget_intervals_before,
    load_stored,
    samples_under,
)
from andon.server.mes_limits import MesLimits
from andon.server.plant_file import PlantModel
from andon.storage.audit import Transaction
from andon.storage.mes import MesChanges, MesRepository, MesWrite
from andon.storage.mes_edit_outcome import EditNotStoredError, EditOutcome
from andon.storage.mes_edits import MesEditRepository

__all__ = [
    "BACKLOG_WAIT_S",
    "LOCKED_WAIT_S",
    "DerivedSink",
    "EditOutOfReachError",
    "IntervalHook",
    "ManualEdits",
    "MesUnavailableError",
]

log = logging.getLogger("andon.server.mes_service")

#: Called inside the transaction that stores a manual interval edit, with what changed.
IntervalHook = Callable[[Transaction, IntervalChanges], None]

#: How long an edit waits for the writer's backlog, without the lock (ingest goes on).
BACKLOG_WAIT_S = 30.0
#: How long an edit waits for the database while it holds the lock (ingest waits meanwhile).
LOCKED_WAIT_S = 5.0

_FAR = 2**62
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class DerivedSink(Protocol):
    """What the service needs of the historian writer (``submit_derived`` and ``flush``)."""

    def submit_derived(self, write: MesWrite, timeout: float | None = None) -> bool: ...

    def flush(self, timeout: float | None = None) -> bool: ...


class MesUnavailableError(DomainError):
    """The database did not take the pending derived writes in time; the edit was not made."""


class EditOutOfReachError(DomainError):
    """The edit reaches further back than ``MesLimits.edit_max_age_days`` allows."""


#: (outcome, undo): an edit whose request stopped waiting before the database answered.
Unsettled = tuple[EditOutcome, Callable[[], None] | None]


class _Service(Protocol):
    """What the mixin needs of ``MesService`` (and its own methods, called on the service)."""

    plant: PlantModel
    limits: MesLimits
    horizon_ms: int
    _unsettled: list[Unsettled]

    @property
    def _lock(self) -> threading.RLock: ...

    @property
    def _sink(self) -> DerivedSink: ...

    @property
    def _assets(self) -> dict[AssetPath, AssetState]: ...

    @property
    def _history(self) -> HistoryLookup | None: ...

    @property
    def _clock(self) -> Callable[[], int]: ...

    @property
    def repository(self) -> MesRepository: ...

    @property
    def edit_repository(self) -> MesEditRepository: ...

    @property
    def edit_listeners(self) -> list[Callable[[AssetPath], None]]: ...

    def rollup_scratch(self) -> RollupBuilder: ...

    def state_tag(self, asset: AssetPath) -> str | None: ...

    def exclusive(self) -> AbstractContextManager[None]: ...

    def store_edit(self, changes: MesChanges, undo: Callable[[], None] | None = None) -> None: ...

    def settle_late(self) -> None: ...

    def load_window(self, asset: AssetPath, since_ms: int) -> None: ...

    def reload_intervals(self, asset: AssetPath) -> None: ...

    def notify_edited(self, assets: Iterable[AssetPath]) -> None: ...

    def edit_intervals(
        self,
        asset: AssetPath,
        edit: Callable[[IntervalBuilder], IntervalChanges],
        hook: IntervalHook,
        *,
        since_ms: int | None = None,
    ) -> IntervalChanges: ...


def _before_window(state: AssetState, ts_ms: int) -> bool:
    intervals = state.intervals.intervals
    return not intervals or ts_ms < intervals[0].start_ms


class ManualEdits:
    """Mixed into ``MesService`` (the methods' ``self`` is the service)."""

    # -- what every edit shares -----------------------------------------------------------------
    def exclusive(self: _Service) -> AbstractContextManager[None]:
        """The service's lock with every derived write queued so far stored (see the module);
        MesUnavailableError if the database does not answer in time."""

        @contextmanager
        def held() -> Iterator[None]:
            if not self._sink.flush(timeout=BACKLOG_WAIT_S):
                raise MesUnavailableError("the database is not answering; try again later")
            with self._lock:
                if not self._sink.flush(timeout=LOCKED_WAIT_S):
                    raise MesUnavailableError(
                        "the database is slow to store the newest data; try again later"
                    )
                self.settle_late()
                yield

        return held()

    def store_edit(
        self: _Service, changes: MesChanges, undo: Callable[[], None] | None = None
    ) -> None:
        """Inside ``exclusive``: store a manual edit's changes (their hooks write the edit and
        its audit entry) in a transaction of their own and wait for its outcome. Refused: the
        memory the edit changed is restored (``undo``) and the reason raised. Not answered in
        time: MesUnavailableError -- the edit stays queued and is stored when the database
        answers; should it be refused then, ``undo`` runs at the next edit or ingest."""
        outcome = EditOutcome()
        changes.hooks.append(outcome)
        try:
            self._sink.submit_derived(MesWrite(self.repository, changes))
        except BaseException:
            if undo is not None:
                undo()  # not queued (e.g. this node does not lead the asset's domain)
            raise
        # The flush also makes the writer write now rather than after mes_write_delay_s; once
        # it returns, the writer is done with the edit: an outcome still unknown then means the
        # write was discarded (this node stopped leading the asset's domain meanwhile).
        flushed = self._sink.flush(timeout=LOCKED_WAIT_S)
        if not outcome.settled:
            if not flushed:
                self._unsettled.append((outcome, undo))
                raise MesUnavailableError(
                    "the database did not store the edit in time; it is queued and will be "
                    "stored when the database answers (look before repeating it)"
                )
            outcome.refused(EditNotStoredError("the edit was not stored: this node no longer "
                                               "leads the asset's domain"))  # fmt: skip
        if outcome.error is not None:
            if undo is not None:
                undo()
            raise outcome.error

    def settle_late(self: _Service) -> None:
        """Under the lock: undo the edits the database refused after their request stopped
        waiting (rare: a refusal is normally answered to the request)."""
        if not self._unsettled:
            return
        pending, self._unsettled = self._unsettled, []
        refused = []
        for outcome, undo in pending:
            if not outcome.settled:
                self._unsettled.append((outcome, undo))
            elif outcome.error is not None:
                refused.append((outcome, undo))
        if refused and not self._sink.flush(timeout=LOCKED_WAIT_S):
            self._unsettled.extend(refused)  # memory is restored from the database: wait for it
            return
        for outcome, undo in refused:
            log.error("a manual MES edit was refused after its request stopped waiting: %r; "
                      "the MES memory it changed is restored", outcome.error)  # fmt: skip
            if undo is not None:
                undo()

    def notify_edited(self: _Service, assets: Iterable[AssetPath]) -> None:
        for asset in assets:
            for listener in self.edit_listeners:
                listener(asset)

    # -- the window in memory -------------------------------------------------------------------
    def interval_at(self: _Service, asset: AssetPath, ts_ms: int) -> StateInterval | None:
        """The interval at ``ts_ms``: from memory, or, older than what the builder holds, from
        one database query (nothing is loaded into memory)."""
        state = self._assets.get(asset)
        if state is None or not _INT64_MIN <= ts_ms <= _INT64_MAX:
            return None  # no stored instant is out of BIGINT's range
        with self._lock:
            found = state.intervals.interval_at(ts_ms)
            if found is not None or not _before_window(state, ts_ms):
                return found
        return self.repository.interval_at(asset, ts_ms)

    def load_window(self: _Service, asset: AssetPath, since_ms: int) -> None:
        """Load the stored intervals from the one containing ``since_ms`` up to what the
        builder holds (call inside ``exclusive``)."""
        state = self._assets[asset]
        if not _before_window(state, since_ms):
            return
        intervals = state.intervals.intervals
        until = intervals[0].start_ms if intervals else _FAR
        stored = self.repository.intervals(asset, since_ms, until)
        start = stored[0].start_ms if stored else since_ms
        added = [a.override for a in self.edit_repository.added_states(asset, start, until)]
        plc = samples_under(self._history, self.state_tag(asset), added)
        load_stored(state, asset, stored, added, plc)

    def reload_intervals(self: _Service, asset: AssetPath) -> None:
        """The asset's interval builder refilled from the database over the window it holds
        (after an edit the database refused: memory as stored; call inside ``exclusive``)."""
        state = self._assets[asset]
        kept = state.intervals.intervals
        state.intervals = IntervalBuilder(asset, self.plant.state_maps[asset])
        if not kept:
            return
        since = kept[0].start_ms
        stored = self.repository.intervals(asset, since, _FAR)
        added = [a.override for a in self.edit_repository.added_states(asset, since, _FAR)]
        plc = samples_under(self._history, self.state_tag(asset), added)
        load_stored(state, asset, stored, added, plc)

    # -- interval edits -------------------------------------------------------------------------
    def assign_reason(
        self: _Service, asset: AssetPath, start_ms: int, reason_id: str | None, hook: IntervalHook
    ) -> IntervalChanges:
        """The reason of the stop starting at ``start_ms`` (None: its state's default)."""
        return self.edit_intervals(
            asset, lambda b: b.assign_reason(start_ms, reason_id), hook, since_ms=start_ms
        )

    def split_interval(
        self: _Service, asset: AssetPath, at_ms: int, hook: IntervalHook
    ) -> IntervalChanges:
        return self.edit_intervals(asset, lambda b: b.split(at_ms), hook, since_ms=at_ms)

    def edit_intervals(
        self: _Service,
        asset: AssetPath,
        edit: Callable[[IntervalBuilder], IntervalChanges],
        hook: IntervalHook,
        *,
        since_ms: int | None = None,
    ) -> IntervalChanges:
        """The builder's change, its rollup increments and ``hook`` (the audit entry) in one
        transaction (see the module). With ``since_ms`` (the earliest instant the edit touches)
        the stored intervals from the one before it are loaded first when they are older than
        the builder's window: EditOutOfReachError beyond ``limits.edit_max_age_days``."""
        state = self._assets.get(asset)
        if state is None:
            raise DomainError(f"{asset} has no state tag")
        with self.exclusive():
            held = state.intervals.intervals
            first = held[0].start_ms if held else self._clock() - self.horizon_ms
            loads = since_ms is not None and _before_window(state, since_ms - 1)
            if loads and since_ms is not None:
                oldest = self._clock() - self.limits.edit_max_age_ms
                if since_ms < oldest:
                    raise EditOutOfReachError(
                        f"{asset}: the edit reaches back to {since_ms}, more than "
                        f"{self.limits.edit_max_age_days:g} days ago (setting "
                        "mes_edit_max_age_days)"
                    )
                self.load_window(asset, since_ms - 1)
            try:
                interval_changes = edit(state.intervals)
                if interval_changes.is_empty:
                    return interval_changes
                changes = MesChanges()
                for interval in interval_changes.removed:
                    changes.intervals[(str(asset), interval.start_ms)] = None
                for interval in interval_changes.added:
                    changes.intervals[(str(asset), interval.start_ms)] = interval
                scratch = self.rollup_scratch()
                increments(changes, scratch, scratch.apply_intervals(interval_changes))
                changes.hooks.append(lambda connection: hook(connection, interval_changes))
                self.store_edit(changes, undo=lambda: self.reload_intervals(asset))
            finally:
                if loads:  # the past loaded for the edit leaves memory again
                    forget_intervals_before(state, first)
        self.notify_edited([asset])
        return interval_changes
