"""The historian of a cluster node: one fenced ``HistorianWriter`` per domain it may lead.

Each domain's writer has its own disk spool and asks the domain's lease for a fencing token
before every transaction (``andon.storage.writer_fence``): passive, it writes nothing and holds
every sample in its spool; promoted, it drains the spool and writes. ``DomainHistorian`` offers
the writer's interface (``submit``, ``submit_derived``, ``flush``, ``stats``, ...) to ingest and
the MES service and routes:

* samples by their edge node's domain (``DomainRouter.domain_of_tag``); samples of a domain this
  node can never lead (it is no candidate) are not historised here (live values only);
* derived MES writes by their asset's domain, through a ``DerivedGate``. The gate of a domain
  opens only once the node has re-derived that domain's MES after a promotion (rollups are
  increments: what a passive node derived on top of the leader's writes would count twice). A
  closed gate discards derived writes; a manual edit (a write carrying hooks: the edit and its
  audit entry) is refused with ``NotLeaderError`` instead, which the API answers with 409. Each
  gated write remembers the gate's generation when it was made: one made before a demotion is
  discarded by the writer even if the node leads again by the time it is written.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields

from andon.cluster.model import FencingToken
from andon.server.cluster_errors import NotLeaderError
from andon.server.cluster_routing import DomainRouter
from andon.storage.historian_writer import HistorianWriter, HistorianWriterStats
from andon.storage.mes import MesChanges, MesWrite
from andon.storage.types import Sample
from andon.storage.writer_fence import NotLeader

__all__ = ["DerivedGate", "DomainHistorian", "GatedWrite", "split_changes"]

log = logging.getLogger(__name__)


class DerivedGate:
    """Per domain: closed, or open in a generation (a new one at every opening)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = 0
        self._open: dict[str, int] = {}

    def open(self, domain: str) -> int:
        with self._lock:
            self._generation += 1
            self._open[domain] = self._generation
            return self._generation

    def close(self, domain: str) -> None:
        with self._lock:
            self._open.pop(domain, None)

    def generation(self, domain: str) -> int | None:
        """The open generation, None while closed."""
        with self._lock:
            return self._open.get(domain)


class GatedWrite:
    """A ``MesWrite`` the writer writes only while its gate generation is still open."""

    def __init__(self, inner: MesWrite, gate: DerivedGate, domain: str, generation: int) -> None:
        self.inner = inner
        self.gate = gate
        self.domain = domain
        self.generation = generation

    @property
    def rows(self) -> int:
        return self.inner.rows

    def merge(self, newer: GatedWrite) -> None:
        if newer.generation != self.generation:
            # This one belongs to an earlier leadership and will be discarded anyway.
            self.inner, self.generation = newer.inner, newer.generation
            return
        self.inner.merge(newer.inner)

    def write(self, fence: FencingToken | None = None) -> None:
        if self.gate.generation(self.domain) != self.generation:
            raise NotLeader(f"derived writes of domain {self.domain} made before a demotion")
        self.inner.write(fence)


def split_changes(
    changes: MesChanges, domain_of_asset: Callable[[str], str]
) -> dict[str, MesChanges]:
    """The changes of each domain. Hooks (an edit's own records) go with the first domain the
    changes touch: one edit is one transaction, and an edit concerns one asset."""
    parts: dict[str, MesChanges] = {}

    def part(asset: str) -> MesChanges:
        domain = domain_of_asset(asset)
        found = parts.get(domain)
        if found is None:
            found = parts[domain] = MesChanges()
        return found

    for ikey, interval in changes.intervals.items():
        part(ikey[0]).intervals[ikey] = interval
    for ckey, count in changes.counts.items():
        part(ckey[0]).counts[ckey] = count
    for rkey, increment in changes.rollups.items():
        part(rkey[0]).rollups[rkey] = increment
    for reason_key, ms in changes.reasons.items():
        part(reason_key[0]).reasons[reason_key] = ms
    if changes.hooks:
        first = next(iter(parts.values())) if parts else parts.setdefault("", MesChanges())
        first.hooks.extend(changes.hooks)
    return parts


def _sum_stats(stats: Sequence[HistorianWriterStats]) -> HistorianWriterStats:
    if not stats:
        return HistorianWriterStats(0, 0, 0, 0, 0, 0.0, 0, 0, True)
    values: dict[str, object] = {}
    for item in fields(HistorianWriterStats):
        column = [getattr(s, item.name) for s in stats]
        if item.name == "database_up":
            values[item.name] = all(column)
        elif item.name in ("spooling", "fenced"):
            values[item.name] = any(column)
        elif item.name in ("last_batch_size", "last_batch_seconds"):
            values[item.name] = max(column)
        else:
            values[item.name] = sum(column)
    return HistorianWriterStats(**values)  # type: ignore[arg-type]


class DomainHistorian:
    """``writers``: the node's writer per domain it may lead (each fenced by that domain)."""

    def __init__(
        self,
        writers: Mapping[str, HistorianWriter],
        router: DomainRouter,
        *,
        writable: Callable[[str], bool],
        refusal: Callable[[str], str],
    ) -> None:
        self._writers = dict(writers)
        self._router = router
        self._writable = writable  # the domain's fence gives a token now
        self._refusal = refusal  # why this node may not write for the domain (names the leader)
        self.gate = DerivedGate()
        self.not_led_samples_total = 0  # samples of domains this node never leads (not stored)
        self.derived_discarded_total = 0  # derived rows not queued: the domain's gate is shut

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(self._writers)

    def writer(self, domain: str) -> HistorianWriter | None:
        return self._writers.get(domain)

    # -- the HistorianWriter interface ----------------------------------------------------------

    def submit(self, samples: Sequence[Sample], timeout: float | None = None) -> bool:
        """Queue each domain's samples with its writer (blocking while one is full). False if a
        ``timeout`` expired for one of them: the others stay queued (writes are idempotent)."""
        by_domain: dict[str, list[Sample]] = {}
        domain_of_tag = self._router.domain_of_tag
        for sample in samples:
            by_domain.setdefault(domain_of_tag(sample.tag), []).append(sample)
        queued = True
        for domain, part in by_domain.items():
            writer = self._writers.get(domain)
            if writer is None:
                self.not_led_samples_total += len(part)
                continue
            queued = writer.submit(part, timeout) and queued
        return queued

    def submit_derived(self, write: MesWrite, timeout: float | None = None) -> bool:
        parts = split_changes(write.changes, self._router.domain_of_asset)
        if len(parts) == 1 and "" in parts:  # hooks only: the first domain open here decides
            open_domains = [d for d in self._writers if self.gate.generation(d) is not None]
            parts = {open_domains[0] if open_domains else self._router.names[0]: parts[""]}
        plan: list[tuple[HistorianWriter, GatedWrite]] = []
        for domain, changes in parts.items():
            generation = self.gate.generation(domain)
            writer = self._writers.get(domain)
            if generation is None or writer is None:
                if changes.hooks:
                    raise NotLeaderError(self._refusal(domain))
                self.derived_discarded_total += changes.rows
                continue
            plan.append(
                (
                    writer,
                    GatedWrite(MesWrite(write.repository, changes), self.gate, domain, generation),
                )
            )
        queued = True
        for writer, gated in plan:
            queued = writer.submit_derived(gated, timeout) and queued
        return queued

    def flush(self, timeout: float | None = None) -> bool:
        """Wait for the writers of the domains this node writes for now (a passive domain's
        writer commits nothing, so waiting for it would only time out)."""
        ok = True
        for domain, writer in self._writers.items():
            if self._writable(domain):
                ok = writer.flush(timeout) and ok
        return ok

    def start(self) -> None:
        for writer in self._writers.values():
            writer.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop every writer; what a passive domain holds stays in its spool for next time."""
        ok = True
        for writer in self._writers.values():
            ok = writer.stop(timeout) and ok
        return ok

    def stats(self) -> HistorianWriterStats:
        return _sum_stats([writer.stats() for writer in self._writers.values()])

    def domain_stats(self) -> dict[str, HistorianWriterStats]:
        return {domain: writer.stats() for domain, writer in self._writers.items()}
