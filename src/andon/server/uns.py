"""``UnsPublisher``: a retained JSON mirror of each asset on the Unified Namespace.

``andon/v1/<asset path>/state`` carries the current state, mode, reason, run and the current
shift's counts; ``andon/v1/<asset path>/oee`` the current shift's OEE so far. Both are QoS 1 and
retained, so a consumer that subscribes later gets the present picture at once.

A document is rebuilt when the asset's data changes, at most once per ``min_interval_s`` per
asset (a PLC that toggles a state ten times a second must not flood the broker: the last picture
is what counts), and for every asset when a host session comes (back) online, since a broker
restarted without persistence has lost the retained copies. The publisher thread looks at most
every ``min_interval_s`` / 10 and builds the documents due by then together, their accounts read
in one go (``andon.server.uns_accounts``): a thousand assets are 200 documents a second. Each
document carries ``key = "<asset>/<kind>/<source ts ms>"``, the newest source timestamp it
reflects: a republish of unchanged data has the same key, so consumers can drop duplicates. A
stored manual edit (runs, reasons, splits, reverts, added states, count edits) counts as a
source change at its own time.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from andon.domain import AssetPath, TimeAccount
from andon.server.host_connection import HostConnection
from andon.server.mes_queries import MesQueries
from andon.server.uns_accounts import Period, PeriodAccounts

__all__ = ["TOPIC_PREFIX", "UnsPublisher", "uns_topic"]

log = logging.getLogger(__name__)

TOPIC_PREFIX = "andon/v1"
#: The shortest time between two looks of the publisher thread, as a share of the interval.
_GATHER_SHARE = 0.1


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
        self._accounts = PeriodAccounts(queries)
        self._cond = threading.Condition()
        self._dirty: set[AssetPath] = set()
        self._last_sent: dict[AssetPath, float] = {}
        self._source_ms: dict[AssetPath, int] = {}
        # The publisher thread's next look (monotonic s): a change wakes it only when it makes
        # an asset due before that, and looks are at least ``_gather_s`` apart, so that the
        # assets falling due meanwhile are built together (see ``_run``).
        self._wake_at = math.inf
        self._gather_s = min_interval_s * _GATHER_SHARE
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.published_total = 0
        self.refused_total = 0
        self._refusing = False  # a refusal was logged; cleared by the next clean round

    # -- what changes ---------------------------------------------------------------------------
    def changed(self, assets: Mapping[AssetPath, int]) -> None:
        """Assets whose data changed, with the newest source timestamp of the change (what
        ``MesService.offer`` returns for the samples it derived from)."""
        with self._cond:
            for asset, ts_ms in assets.items():
                self._source_ms[asset] = max(self._source_ms.get(asset, ts_ms), ts_ms)
                self._mark(asset)

    def edited(self, asset: AssetPath) -> None:
        """A manual edit of the asset was stored (an ``MesService.edit_listeners`` entry): its
        documents are rebuilt, with a newer key than before, since the data they show changed
        though no newer sample came (the key takes the edit's time, or one ms more)."""
        now = self._queries.now_ms()
        with self._cond:
            self._source_ms[asset] = max(self._source_ms.get(asset, now - 1) + 1, now)
            self._mark(asset)

    def republish_all(self) -> None:
        """Every asset again (a host session came online); called from the MQTT thread, so it
        only marks them."""
        with self._cond:
            for asset in self._assets:
                self._mark(asset)

    def _mark(self, asset: AssetPath) -> None:
        """``asset`` changed (under the lock): wake the publisher if it is due before the
        publisher's next look."""
        if asset in self._dirty:
            return  # already waiting: the next look counts with it
        self._dirty.add(asset)
        due = self._last_sent.get(asset, -math.inf) + self._min_interval
        if due < self._wake_at:
            self._wake_at = due
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
            built = self._build(
                [a for a in sorted(due) if self._may_publish is None or self._may_publish(a)]
            )
            for asset, documents in built.items():
                if documents is not None:
                    self._publish(asset, documents)
            if self._refusing and self.refused_total == refused_before:
                self._refusing = False
                log.info("UNS: the broker takes documents again")
            if self._dirty:  # refused documents wait their interval before the retry
                waiting.append(now + self._min_interval)
        return min(waiting) if waiting else None

    def _build(self, assets: list[AssetPath]) -> dict[AssetPath, dict[str, dict[str, Any]] | None]:
        """The documents of ``assets`` at one instant, their accounts read together; None for
        an asset whose documents could not be built (logged)."""
        now = self._queries.now_ms()
        try:
            totals = self._accounts.totals(assets, now)
        except Exception:  # built one by one below, each failure logged with its asset
            totals = {}
        built: dict[AssetPath, dict[str, dict[str, Any]] | None] = {}
        for asset in assets:
            try:
                period, account = totals.get(asset) or self._total(asset, now)
                built[asset] = self._documents(asset, now, period, account)
            except Exception:  # one asset's bad data must not stop the mirror of the others
                log.exception("UNS: could not build the documents of %s", asset)
                built[asset] = None
        return built

    def _total(self, asset: AssetPath, now: int) -> tuple[Period, TimeAccount]:
        period = Period(*self._period(asset, now))
        start = period.start_ms
        return period, self._queries.total(asset, start, max(now, start + 1))

    def _publish(self, asset: AssetPath, documents: dict[str, dict[str, Any]]) -> None:
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
        now = self._queries.now_ms()
        period, account = self._accounts.totals([asset], now)[asset]
        return self._documents(asset, now, period, account)

    def _documents(
        self, asset: AssetPath, now: int, period: Period, account: TimeAccount
    ) -> dict[str, dict[str, Any]]:
        current = self._service.current(asset)
        with self._cond:
            source = self._source_ms.get(asset, 0)
        if current is not None:
            source = max(source, current.start_ms)
        start, end, label = period.start_ms, period.end_ms, period.label
        common = {"asset": str(asset), "time": _iso(now), "time_ms": now}
        common |= {"source_time": _iso(source), "source_ts_ms": source}
        span = {"shift": label, "start": _iso(start), "start_ms": start}
        span |= {"end": _iso(end), "end_ms": end}
        return {
            "state": {
                "key": f"{asset}/state/{source}",
                **common,
                **self._state(asset, now),
                "counts": {
                    **span,
                    "total": account.total_count,
                    "good": account.good_count,
                    "reject": account.reject_count,
                },
            },
            "oee": {"key": f"{asset}/oee/{source}", **common, **span, **_figures(account)},
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
        # Every sample of a bound tag marks its asset changed: a thousand assets whose counters
        # tick every second are a thousand changes a second. The thread looks when the first
        # waiting asset falls due, and at most every ``_gather_s``: the assets due by then are
        # published together (one flush of the historian, one read of their accounts).
        last_look = -math.inf
        while True:
            with self._cond:
                while not self._stopping:
                    at = max(self._wake_at, last_look + self._gather_s)
                    wait = at - self._monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(None if math.isinf(at) else wait)
                if self._stopping:
                    return
                self._wake_at = math.inf
            last_look = self._monotonic()
            next_due = self.pump()
            if next_due is not None:
                with self._cond:
                    self._wake_at = min(self._wake_at, next_due)


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
