"""``UnsPublisher``: a retained JSON mirror of each asset on the Unified Namespace.

``andon/v1/<asset path>/state`` carries the current state, mode, reason, run and the current
shift's counts; ``andon/v1/<asset path>/oee`` the current shift's OEE so far. Both are QoS 1 and
retained, so a consumer that subscribes later gets the present picture at once.

A document is rebuilt when the asset's data changes, at most once per ``min_interval_s`` per
asset (a PLC that toggles a state ten times a second must not flood the broker: the last picture
is what counts), and for every asset when a host session comes (back) online, since a broker
restarted without persistence has lost the retained copies. Each document carries
``key = "<asset>/<kind>/<source ts ms>"``, the newest source timestamp it reflects: a republish of
unchanged data has the same key, so consumers can drop duplicates. A stored manual edit (runs,
reasons, splits, reverts, added states, count edits) counts as a source change at its own time.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from andon.domain import AssetPath, TimeAccount
from andon.server.host_connection import HostConnection
from andon.server.mes_queries import MesQueries
from andon.storage.types import Sample

__all__ = ["TOPIC_PREFIX", "UnsPublisher", "uns_topic"]

log = logging.getLogger(__name__)

TOPIC_PREFIX = "andon/v1"


def uns_topic(asset: AssetPath, kind: str) -> str:
    # Asset path segments cannot hold '/', '+' or '#' (AssetPath), so the path is a valid topic.
    return f"{TOPIC_PREFIX}/{asset}/{kind}"


def _iso(ts_ms: int) -> str:
    return (datetime(1970, 1, 1) + timedelta(milliseconds=ts_ms)).isoformat(
        timespec="milliseconds"
    ) + "Z"


class UnsPublisher:
    def __init__(
        self,
        queries: MesQueries,
        hosts: Sequence[HostConnection],
        *,
        flush: Callable[[float], bool] | None = None,
        min_interval_s: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        may_publish: Callable[[AssetPath], bool] | None = None,
    ) -> None:
        self._queries = queries
        #: A cluster node mirrors only the assets of the domains it leads (a passive node
        #: publishes nothing); None: every asset.
        self._may_publish = may_publish
        self._service = queries.service
        self._hosts = hosts
        # Counts and rollups reach the database through the historian's queue; waiting for it
        # makes a document include the change that triggered it.
        self._flush = flush
        self._min_interval = min_interval_s
        self._monotonic = monotonic
        self._assets = list(self._service.plant.bound_assets)
        self._cond = threading.Condition()
        self._dirty: set[AssetPath] = set()
        self._last_sent: dict[AssetPath, float] = {}
        self._source_ms: dict[AssetPath, int] = {}
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.published_total = 0
        self.refused_total = 0
        self._refusing = False  # a refusal was logged; cleared by the next clean round

    # -- what changes ---------------------------------------------------------------------------
    def offer(self, samples: Sequence[Sample]) -> None:
        """The samples ingest gave the MES service: mark the assets of bound tags changed."""
        bindings = self._service.plant.bindings
        newest: dict[AssetPath, int] = {}
        for sample in samples:
            binding = bindings.get(sample.tag)
            if binding is not None:
                asset = binding.asset
                newest[asset] = max(newest.get(asset, sample.ts_ms), sample.ts_ms)
        if newest:
            self.changed(newest)

    def changed(self, assets: Mapping[AssetPath, int]) -> None:
        """Assets whose data changed, with the newest source timestamp of the change."""
        with self._cond:
            for asset, ts_ms in assets.items():
                self._source_ms[asset] = max(self._source_ms.get(asset, ts_ms), ts_ms)
                self._dirty.add(asset)
            self._cond.notify()

    def edited(self, asset: AssetPath) -> None:
        """A manual edit of the asset was stored (an ``MesService.edit_listeners`` entry): its
        documents are rebuilt, with a newer key than before, since the data they show changed
        though no newer sample came (the key takes the edit's time, or one ms more)."""
        now = self._queries.now_ms()
        with self._cond:
            self._source_ms[asset] = max(self._source_ms.get(asset, now - 1) + 1, now)
            self._dirty.add(asset)
            self._cond.notify()

    def republish_all(self) -> None:
        """Every asset again (a host session came online); called from the MQTT thread, so it
        only marks them."""
        with self._cond:
            self._dirty.update(self._assets)
            self._cond.notify()

    # -- publishing -----------------------------------------------------------------------------
    def pump(self) -> float | None:
        """Publish the changed assets whose interval has passed; returns the monotonic time the
        next one is due, or None when nothing waits."""
        now = self._monotonic()
        with self._cond:
            since = {a: now - self._last_sent.get(a, -1e18) for a in self._dirty}
            due = [a for a, elapsed in since.items() if elapsed >= self._min_interval]
            self._dirty.difference_update(due)
            for asset in due:
                self._last_sent[asset] = now
            waiting = [self._last_sent[a] + self._min_interval for a in self._dirty]
        if due:
            if self._flush is not None and not self._flush(10.0):
                log.warning("UNS: the historian did not flush; documents may lag")
            refused_before = self.refused_total
            for asset in sorted(due):
                self._publish(asset)
            if self._refusing and self.refused_total == refused_before:
                self._refusing = False
                log.info("UNS: the broker takes documents again")
            if self._dirty:  # refused documents wait their interval before the retry
                waiting.append(now + self._min_interval)
        return min(waiting) if waiting else None

    def _publish(self, asset: AssetPath) -> None:
        if self._may_publish is not None and not self._may_publish(asset):
            return
        try:
            documents = self.documents(asset)
        except Exception:  # one asset's bad data must not stop the mirror of the others
            log.exception("UNS: could not build the documents of %s", asset)
            return
        online = [host for host in self._hosts if host.online]
        refused = False
        for kind, document in documents.items():
            payload = json.dumps(document, separators=(",", ":")).encode()
            for host in online:
                ticket = host.client.publish(uns_topic(asset, kind), payload, qos=1, retain=True)
                # A ticket already failed: the client refused it (its queue is full, or the
                # connection just dropped). The retained picture must not stay stale: retry.
                refused = refused or (ticket.done and not ticket.acknowledged)
            self.published_total += 1
        if refused:
            self._refused(asset)

    def _refused(self, asset: AssetPath) -> None:
        with self._cond:
            self._dirty.add(asset)
            self.refused_total += 1
            first = not self._refusing
            self._refusing = True
        if first:
            log.warning(
                "UNS: the broker connection refused documents (queue full or disconnected); "
                "retrying every %.1f s per asset, refusals counted in refused_total",
                self._min_interval,
            )

    def documents(self, asset: AssetPath) -> dict[str, dict[str, Any]]:
        """The ``state`` and ``oee`` documents of one asset, as they are now."""
        service, now = self._service, self._queries.now_ms()
        current = service.current(asset)
        with self._cond:
            source = self._source_ms.get(asset, 0)
        if current is not None:
            source = max(source, current.start_ms)
        start, end, label = self._period(asset, now)
        account = self._queries.total(asset, start, max(now, start + 1))
        common = {"asset": str(asset), "time": _iso(now), "time_ms": now}
        common |= {"source_time": _iso(source), "source_ts_ms": source}
        period = {"shift": label, "start": _iso(start), "start_ms": start}
        period |= {"end": _iso(end), "end_ms": end}
        return {
            "state": {
                "key": f"{asset}/state/{source}",
                **common,
                **self._state(asset, now),
                "counts": {
                    **period,
                    "total": account.total_count,
                    "good": account.good_count,
                    "reject": account.reject_count,
                },
            },
            "oee": {"key": f"{asset}/oee/{source}", **common, **period, **_figures(account)},
        }

    def _state(self, asset: AssetPath, now: int) -> dict[str, Any]:
        service = self._service
        current = service.current(asset)
        run = service.run_at(asset, now)
        found: dict[str, Any] = {"state": None, "mode": None, "reason": None, "run": None}
        if current is not None:
            definition = service.plant.state_maps[asset].resolve(current.code)
            found["state"] = {
                "code": current.code,
                "name": definition.name,
                "type": current.state_type.value,
                "since": _iso(current.start_ms),
                "since_ms": current.start_ms,
            }
            found["mode"] = current.mode.name
            reasons, reason_id = service.plant.reasons, current.reason_id
            if reason_id is not None:
                path = list(reasons.path(reason_id)) if reason_id in reasons else []
                found["reason"] = {"id": reason_id, "path": path}
        if run is not None:
            found["run"] = {
                "id": run.id,
                "order_id": run.order_id,
                "item_id": service.item_of_order(run.order_id),
                "start": _iso(run.start_ms),
                "start_ms": run.start_ms,
            }
        return found

    def _period(self, asset: AssetPath, now: int) -> tuple[int, int, str | None]:
        """The shift running now, or the local day when the site has no calendar (or no shift
        at this moment)."""
        return self._queries.current_period(asset, now)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="uns-publisher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        next_due: float | None = None
        while True:
            with self._cond:
                if self._stopping:
                    return
                if not self._dirty or next_due is not None:
                    wait = None if next_due is None else max(0.0, next_due - self._monotonic())
                    self._cond.wait(wait)
                if self._stopping:
                    return
            next_due = self.pump()


def _figures(account: TimeAccount) -> dict[str, Any]:
    return {
        "availability": account.availability,
        "performance": account.performance,
        "quality": account.quality,
        "oee": account.oee,
        "running_ms": account.running_ms,
        "planned_production_time_ms": account.planned_production_time_ms,
        "unplanned_downtime_ms": account.unplanned_downtime_ms,
        "planned_downtime_ms": account.planned_downtime_ms,
        "total_count": account.total_count,
        "good_count": account.good_count,
        "reject_count": account.reject_count,
    }
