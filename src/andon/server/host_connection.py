"""The host application's MQTT session: STATE Will and birth, subscriptions, commands.

Sparkplug 3.0 order on every (re)connect (SPARKPLUG.md §8): CONNECT with the STATE Will
(offline, timestamp T) -> subscribe to our own STATE and the namespace, wait for both SUBACKs ->
publish STATE online with the same T. The session state machine decides the payloads; this
class only does the IO.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from andon.mqtt.interface import BrokerClient, MqttEndpoint, Will
from andon.sparkplug.actions import Publish
from andon.sparkplug.host import HostApplicationSession

__all__ = ["BrokerClientFactory", "HostConnection"]

log = logging.getLogger(__name__)

#: Builds the broker client: (endpoint, message handler, listener, will factory) -> client.
BrokerClientFactory = Callable[..., BrokerClient]


class HostConnection:
    def __init__(
        self,
        endpoint: MqttEndpoint,
        session: HostApplicationSession,
        on_message: Callable[[str, bytes], None],
        client_factory: BrokerClientFactory,
        command_gate: Callable[[str], bool] | None = None,
    ) -> None:
        self.session = session
        #: topic -> may it be published now; a cluster node sends NCMD/DCMD only to the edges
        #: of the domains it leads (checklist R-14). None: everything may.
        self.command_gate = command_gate
        self.session_lock = threading.Lock()
        self._session = session
        self._session_lock = self.session_lock
        self.endpoint = endpoint
        self._online = threading.Event()
        #: Called (on the MQTT thread, so they must not block) each time the session comes
        #: online: the UNS mirror republishes its retained documents then.
        self.online_listeners: list[Callable[[], None]] = []
        self.client = client_factory(
            endpoint,
            on_message=on_message,
            listener=self,
            will_factory=self._next_will,
        )

    # -- BrokerClient callbacks -------------------------------------------------------------
    def _next_will(self) -> Will:
        with self._session_lock:
            will = self._session.connect(time.time_ns() // 1_000_000)
        return Will(topic=will.topic, payload=will.payload, qos=will.qos, retain=will.retain)

    def on_connected(self) -> None:
        with self._session_lock:
            filters = self._session.subscriptions()
            birth = self._session.birth()
        if not self.client.subscribe(filters):
            log.error("host subscriptions were refused; reconnecting")
            self.client.disconnect()
            return
        # The STATE birth is the first thing we publish in this session, after both SUBACKs.
        if self.client.publish(birth.topic, birth.payload, qos=birth.qos, retain=birth.retain).wait(
            10.0
        ):
            self._online.set()
            log.info("host application online (STATE birth published)")
            for listener in self.online_listeners:
                listener()
        else:
            log.warning("STATE birth was not acknowledged; reconnecting")
            self.client.disconnect()

    def on_disconnected(self, reason: str) -> None:
        self._online.clear()

    # -- used by the server ------------------------------------------------------------------
    def publish(self, action: Publish) -> None:
        """Publish an action from the host session (rebirth requests, STATE re-birth).

        Nothing goes out before this session's STATE birth (H-03/H-04): a rebirth request
        dropped here is asked again after the debounce.
        """
        if not self._online.is_set():
            log.debug("not yet online; dropped %s", action.topic)
            return
        if self.command_gate is not None and not self.command_gate(action.topic):
            log.debug("not the leader of the edge's domain; not sent: %s", action.topic)
            return
        self.client.publish(action.topic, action.payload, qos=action.qos, retain=action.retain)

    def disconnect(self) -> None:
        """End this session; the client reconnects with a new Will (and a new STATE T)."""
        self.client.disconnect()

    @property
    def online(self) -> bool:
        return self._online.is_set()

    def wait_online(self, timeout: float) -> bool:
        return self._online.wait(timeout)

    def start(self) -> None:
        self.client.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Publish STATE offline (QoS 1, retained) before closing, as the rules require."""
        if self.client.connected:
            with self._session_lock:
                death = self._session.shutdown(time.time_ns() // 1_000_000)
            ticket = self.client.publish(death.topic, death.payload, qos=death.qos, retain=True)
            if not ticket.wait(timeout):
                log.warning("STATE offline was not acknowledged before shutdown")
        self.client.stop(timeout)
        self._online.clear()
