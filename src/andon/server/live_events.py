"""``LiveEvents``: tag value changes and asset state changes, pushed to web clients.

The live tag table calls the hub on the ingest thread with every batch of changed tags. Ingest
hands samples to the MES service before it updates the live table, so when a state or mode tag
changes here the asset's current interval already reflects it. The hub turns a batch into
JSON-ready items once and offers each subscription the items its filter selects.

A subscription is a bounded buffer read by one HTTP response on the server's event loop. Ingest
never waits for a client: a client whose buffer is full is dropped with a reason, and its
browser reconnects and starts again from a snapshot of the current values.

The number of streams is bounded too, per user and in all (``LiveLimitError``): each holds a
buffer and costs work on every batch, so a script opening streams in a loop must not take the
server's memory or the ingest thread's time.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from andon.domain import AssetPath
from andon.server.live_tags import LiveTag, LiveTagTable
from andon.server.mes_queries import MesQueries

__all__ = [
    "DEFAULT_CLIENT_CAPACITY",
    "DEFAULT_MAX_CLIENTS",
    "DEFAULT_MAX_CLIENTS_PER_USER",
    "LiveEvents",
    "LiveFilter",
    "LiveLimitError",
    "LiveSubscription",
    "asset_state_json",
    "json_value",
    "tag_json",
]

log = logging.getLogger(__name__)

#: Values one client may have waiting before it is dropped (ServerSettings.live_client_queue).
DEFAULT_CLIENT_CAPACITY = 10_000
#: Streams open at once on one server, and per user. A plant's panels often share one login,
#: so the per-user figure leaves room for a few dozen screens with a spare tab each.
DEFAULT_MAX_CLIENTS = 512
DEFAULT_MAX_CLIENTS_PER_USER = 64
#: The roles of bound tags whose change changes an asset's current state.
_STATE_ROLES = frozenset({"state", "mode"})

#: One event of the stream: its name ("tags" or "states") and its items.
Event = tuple[str, list[dict[str, Any]]]


def json_value(value: object) -> Any:
    """A tag value as JSON can carry it: bytes as base64, NaN and infinities as null."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, tuple | list):
        return [json_value(v) for v in value]
    return value


def tag_json(tag: LiveTag) -> dict[str, Any]:
    return {
        "path": tag.path,
        "value": json_value(tag.value),
        "datatype": tag.datatype,
        "quality": tag.quality,
        "ts_ms": tag.source_ts_ms,
        "online": tag.online,
    }


def asset_state_json(mes: MesQueries, asset: AssetPath) -> dict[str, Any] | None:
    """The current state of an asset with a state tag; None while no state is known."""
    service = mes.service
    current = service.current(asset)
    if current is None:
        return None
    reasons = service.plant.reasons
    reason_id = current.reason_id
    return {
        "asset": str(asset),
        "code": current.code,
        "name": service.plant.state_maps[asset].resolve(current.code).name,
        "state_type": current.state_type.value,
        "mode": current.mode.name,
        "reason_id": reason_id,
        "reason": (
            " / ".join(reasons.path(reason_id))
            if reason_id is not None and reason_id in reasons
            else None
        ),
        "since_ms": current.start_ms,
    }


@dataclass(frozen=True, slots=True)
class LiveFilter:
    """What one client wants: tags under a path prefix, states of assets under one."""

    tag_prefix: str = ""
    asset_prefix: str = ""
    tags: bool = True
    states: bool = True

    def wants_asset(self, asset: str) -> bool:
        prefix = self.asset_prefix.strip("/")
        return not prefix or asset == prefix or asset.startswith(prefix + "/")


class LiveLimitError(Exception):
    """No room for another stream: ``per_user`` True when the user has too many open, False
    when the server has."""

    def __init__(self, message: str, *, per_user: bool) -> None:
        super().__init__(message)
        self.per_user = per_user


class LiveSubscription:
    """One client's bounded buffer: filled on the ingest thread, read on the event loop."""

    def __init__(
        self,
        live_filter: LiveFilter,
        loop: asyncio.AbstractEventLoop,
        capacity: int,
        owner: str | None = None,
    ) -> None:
        self.filter = live_filter
        #: The user who opened the stream (None: not counted against a user's limit).
        self.owner = owner
        self._loop = loop
        self._capacity = capacity
        self._lock = threading.Lock()
        self._pending: list[Event] = []
        self._size = 0
        self._wake_scheduled = False
        self._wakeup = asyncio.Event()
        #: Why the stream ends (dropped as too slow, or the server stops); None while it runs.
        self.end_reason: str | None = None

    def offer(self, name: str, items: list[dict[str, Any]]) -> None:
        """Queue items for the client; never blocks. Overflow drops the client, not the data
        of the others: its browser reconnects and gets a fresh snapshot."""
        if not items:
            return
        with self._lock:
            if self.end_reason is not None:
                return
            if self._size + len(items) > self._capacity:
                self.end_reason = (
                    f"too slow: more than {self._capacity} values were waiting to be sent"
                )
                self._pending.clear()
                self._size = 0
            else:
                self._pending.append((name, items))
                self._size += len(items)
            if self._wake_scheduled:
                return
            self._wake_scheduled = True
        self._wake()

    def end(self, reason: str) -> None:
        with self._lock:
            if self.end_reason is None:
                self.end_reason = reason
            self._wake_scheduled = True
        self._wake()

    def _wake(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._wakeup.set)
        except RuntimeError:  # the loop is closed: the response is gone already
            with self._lock:
                self.end_reason = self.end_reason or "the connection is closed"

    async def next_events(self, wait_s: float) -> list[Event] | None:
        """The events queued since the last call; None when ``wait_s`` passed without any."""
        try:
            await asyncio.wait_for(self._wakeup.wait(), wait_s)
        except TimeoutError:
            return None
        # Cleared before taking: an offer after the take schedules a new wake-up.
        self._wakeup.clear()
        with self._lock:
            events, self._pending = self._pending, []
            self._size = 0
            self._wake_scheduled = False
        return events


class LiveEvents:
    """The hub between the live tag table (and the MES service) and the web clients."""

    def __init__(
        self,
        live_tags: LiveTagTable,
        mes: MesQueries | None = None,
        *,
        client_capacity: int = DEFAULT_CLIENT_CAPACITY,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        max_clients_per_user: int = DEFAULT_MAX_CLIENTS_PER_USER,
    ) -> None:
        self._live_tags = live_tags
        self._mes = mes
        self._capacity = client_capacity
        self.max_clients = max_clients
        self.max_clients_per_user = max_clients_per_user
        self._lock = threading.Lock()
        self._subscriptions: list[LiveSubscription] = []
        self._closed_reason: str | None = None
        self.dropped_total = 0
        self._remove_listener = live_tags.add_listener(self._on_tags)

    # -- clients ----------------------------------------------------------------------------------
    def subscribe(
        self, live_filter: LiveFilter, loop: asyncio.AbstractEventLoop, owner: str | None = None
    ) -> LiveSubscription:
        """A new stream's buffer; ``LiveLimitError`` when ``owner`` or the server has no room
        for another one."""
        subscription = LiveSubscription(live_filter, loop, self._capacity, owner)
        with self._lock:
            if self._closed_reason is not None:
                subscription.end(self._closed_reason)
            else:
                self._check_room(owner)
                self._subscriptions.append(subscription)
        return subscription

    def check_room(self, owner: str | None) -> None:
        """``LiveLimitError`` if a stream of ``owner`` would be refused now (checked before the
        response starts, so the client gets a status; ``subscribe`` checks again)."""
        with self._lock:
            self._check_room(owner)

    def _check_room(self, owner: str | None) -> None:
        if len(self._subscriptions) >= self.max_clients:
            raise LiveLimitError(
                f"this server has {self.max_clients} live streams open, its limit; try again later",
                per_user=False,
            )
        if owner is not None:
            mine = sum(1 for s in self._subscriptions if s.owner == owner)
            if mine >= self.max_clients_per_user:
                raise LiveLimitError(
                    f"user {owner} has {mine} live streams open, the limit per user; "
                    "close some pages or tabs",
                    per_user=True,
                )

    def unsubscribe(self, subscription: LiveSubscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)
        if subscription.end_reason is not None and subscription.end_reason.startswith("too slow"):
            with self._lock:
                self.dropped_total += 1
            log.warning("live updates: a client was dropped: %s", subscription.end_reason)

    @property
    def client_count(self) -> int:
        with self._lock:
            return len(self._subscriptions)

    def snapshot(self, live_filter: LiveFilter) -> list[Event]:
        """The current values a new client starts from (taken after it subscribed, so no
        change falls between the snapshot and the stream)."""
        events: list[Event] = []
        if live_filter.tags:
            tags = [tag_json(t) for t in self._live_tags.snapshot(live_filter.tag_prefix)]
            if tags:
                events.append(("tags", tags))
        if live_filter.states and self._mes is not None:
            states = [
                state
                for asset in self._mes.service.plant.bound_assets
                if live_filter.wants_asset(str(asset))
                and (state := asset_state_json(self._mes, asset)) is not None
            ]
            if states:
                events.append(("states", states))
        return events

    def close(self, reason: str = "the server is stopping") -> None:
        """End every stream (the server stops); later subscriptions end at once."""
        self._remove_listener()
        with self._lock:
            self._closed_reason = reason
            subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            subscription.end(reason)

    def asset_changed(self, asset: AssetPath) -> None:
        """A user changed the asset's current interval (its reason or mode): tell the clients.
        Called on an API thread; like the ingest thread, it only queues."""
        if self._mes is None:
            return
        state = asset_state_json(self._mes, asset)
        if state is not None:
            self._offer_all([], [state])

    # -- the ingest thread ------------------------------------------------------------------------
    def _on_tags(self, changed: Sequence[LiveTag]) -> None:
        if not self.client_count:
            return  # the usual case on a server nobody watches: no work on the ingest thread
        try:
            self._offer_all([tag_json(tag) for tag in changed], self._states(changed))
        except Exception:  # a bug here must not cost ingest its live values
            log.exception("live updates: could not hand a batch to the clients")

    def _offer_all(self, tags: list[dict[str, Any]], states: list[dict[str, Any]]) -> None:
        with self._lock:
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            wanted = subscription.filter
            if wanted.tags and tags:
                prefix = wanted.tag_prefix
                subscription.offer(
                    "tags", [t for t in tags if t["path"].startswith(prefix)] if prefix else tags
                )
            if wanted.states and states:
                subscription.offer("states", [s for s in states if wanted.wants_asset(s["asset"])])

    def _states(self, changed: Sequence[LiveTag]) -> list[dict[str, Any]]:
        if self._mes is None:
            return []
        bindings = self._mes.service.plant.bindings
        assets = {
            binding.asset
            for tag in changed
            if (binding := bindings.get(tag.path)) is not None and binding.role in _STATE_ROLES
        }
        return [
            state
            for asset in sorted(assets)
            if (state := asset_state_json(self._mes, asset)) is not None
        ]
