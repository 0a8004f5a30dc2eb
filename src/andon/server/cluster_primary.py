"""The primary host of a domain: what a node opens when it is promoted, and closes first when it
is demoted (DESIGN.md §5; SPARKPLUG.md §8-§9; checklist R-10, R-12, R-13).

The edges of a domain are configured with the domain's ``host_id`` as their Primary Host ID:
they publish only while that host's STATE is online and store everything while it is offline.
The leader of the domain holds, on every broker, a session whose only job is that STATE (Will
offline with T, subscribe to its own STATE, birth online with T); data arrives on the node's
own secondary session (host ID = node ID), which every node keeps. All nodes use the same
client ID, ``andon-primary-<host_id>``, so a new leader's CONNECT displaces the session of a
stale one on the broker (MQTT client-ID takeover).

* A session is only (re)connected while ``may_lead()`` is true: a node resumed after being
  frozen past its lease must not take the client ID back from the new leader (the Will factory
  refuses, so no CONNECT is sent).
* Seeing its own STATE declared offline by someone else (a late message of a former leader),
  the session reconnects with a new timestamp (the Sparkplug v4 direction): republishing the
  old T would be ignored by edges that have seen the newer offline.
* ``close`` publishes STATE offline (QoS 1, retained) before disconnecting, bounded in time: it
  runs on the lease loop between "stop writing" and "release the lease".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from andon.mqtt.interface import BrokerClient, MqttEndpoint, Will
from andon.server.host_connection import BrokerClientFactory
from andon.sparkplug.actions import Disconnect, Publish
from andon.sparkplug.host import HostApplicationSession

__all__ = ["NotLeading", "PrimaryHost", "primary_client_id"]

log = logging.getLogger(__name__)


def primary_client_id(host_id: str) -> str:
    """The same on every node of the cluster, so that the broker keeps one session per host."""
    return f"andon-primary-{host_id}"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class NotLeading(RuntimeError):
    """Raised by the Will factory: this node does not lead the domain, so it does not connect."""


class _StateLink:
    """One broker's primary-host session: STATE only (a ``ConnectionListener``)."""

    def __init__(
        self,
        endpoint: MqttEndpoint,
        host_id: str,
        may_lead: Callable[[], bool],
        client_factory: BrokerClientFactory,
    ) -> None:
        self.endpoint = endpoint
        self._may_lead = may_lead
        self._lock = threading.Lock()
        self._session = HostApplicationSession(host_id, state_v4_mode=True)
        self._online = threading.Event()
        self.births = 0
        self.client: BrokerClient = client_factory(
            endpoint, on_message=self._on_message, listener=self, will_factory=self._next_will
        )

    def _next_will(self) -> Will:
        if not self._may_lead():
            raise NotLeading(f"not the leader of {self._session.host_id}: no primary session")
        with self._lock:
            will = self._session.connect(_now_ms())
        return Will(will.topic, will.payload, will.qos, will.retain)

    def on_connected(self) -> None:
        with self._lock:
            birth = self._session.birth()
        if not self._may_lead():
            self.client.disconnect()
            return
        if not self.client.subscribe([(self._session.state_topic, 1)]):
            log.error("primary host %s: STATE subscription refused; reconnecting",
                      self._session.host_id)  # fmt: skip
            self.client.disconnect()
            return
        ticket = self.client.publish(birth.topic, birth.payload, qos=1, retain=True)
        if ticket.wait(10.0):
            self.births += 1
            self._online.set()
            log.warning("primary host %s online on %s", self._session.host_id,
                        self.endpoint.address)  # fmt: skip
        else:
            self.client.disconnect()

    def on_disconnected(self, reason: str) -> None:
        self._online.clear()

    def _on_message(self, topic: str, payload: bytes) -> None:
        with self._lock:
            actions = self._session.on_message(topic, payload, _now_ms())
        for action in actions:
            if isinstance(action, Disconnect):
                log.warning("primary host %s: %s", self._session.host_id, action.reason)
                self.client.disconnect()
            elif isinstance(action, Publish):  # not expected in v4 mode; harmless
                self.client.publish(action.topic, action.payload, action.qos, action.retain)

    @property
    def online(self) -> bool:
        return self._online.is_set()

    def close(self, timeout_s: float) -> None:
        if self.client.connected:
            with self._lock:
                death = self._session.shutdown(_now_ms())
            ticket = self.client.publish(death.topic, death.payload, qos=1, retain=True)
            if not ticket.wait(timeout_s):
                log.warning("primary host %s: STATE offline not acknowledged by %s",
                            self._session.host_id, self.endpoint.address)  # fmt: skip
        self.client.stop(timeout_s)
        self._online.clear()


class PrimaryHost:
    """The primary-host sessions of one domain, one per broker; open while the node leads.

    ``brokers``: the endpoints to use, with client ID ``primary_client_id(host_id)``.
    """

    def __init__(
        self,
        host_id: str,
        brokers: Sequence[MqttEndpoint],
        client_factory: BrokerClientFactory,
        may_lead: Callable[[], bool],
    ) -> None:
        self.host_id = host_id
        self._brokers = list(brokers)
        self._client_factory = client_factory
        self._may_lead = may_lead
        self._links: list[_StateLink] = []
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        with self._lock:
            return bool(self._links)

    @property
    def online(self) -> bool:
        with self._lock:
            return bool(self._links) and all(link.online for link in self._links)

    def open(self) -> None:
        """Connect on every broker (in the background); the births follow each CONNACK."""
        with self._lock:
            if self._links:
                return
            self._links = [
                _StateLink(endpoint, self.host_id, self._may_lead, self._client_factory)
                for endpoint in self._brokers
            ]
            links = list(self._links)
        for link in links:
            link.client.start()

    def close(self, timeout_s: float = 0.5) -> None:
        """STATE offline on every broker, then disconnect; each step bounded by ``timeout_s``."""
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            try:
                link.close(timeout_s)
            except Exception:  # the lease must still be released after this
                log.exception("primary host %s: closing on %s failed", self.host_id,
                              link.endpoint.address)  # fmt: skip
