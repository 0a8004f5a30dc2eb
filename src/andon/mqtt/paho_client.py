"""``BrokerClient`` over paho-mqtt 2.x: MQTT 3.1.1, own reconnect loop; clean sessions unless
the endpoint asks for a persistent one (``clean_session=False``, with ``manual_ack`` for consumers
that acknowledge a message only once it is stored).

Threads (per client):

* **connection thread** (``andon-mqtt-<id>``): builds a *fresh* paho client for every attempt
  (so ``will_factory`` gives each CONNECT its own Will, and no QoS 1 message of a dead session is
  silently re-sent by paho), connects, then runs paho's network loop. The message handler,
  PUBACK and SUBACK processing all run here: this is "the network thread".
* **dispatcher thread** (``andon-mqtt-<id>-events``): calls the ``ConnectionListener``, in order.
  It is never the network thread, so ``on_connected`` may call ``subscribe()`` and wait for the
  SUBACK without deadlocking.

Only the network thread writes to the socket. paho's ``publish()`` called from another thread
(the edge's publisher, the dispatcher, the UNS mirror) would otherwise write at once itself when
no paho-owned loop thread exists, as here: paho's writer takes no lock, so two threads popped
packets from its queue together and sent them out of order (an NBIRTH after the DBIRTHs that
followed it) or, after a partial send, interleaved. Registering the socket-write callbacks, as an
external event loop does, makes ``publish()`` only queue the packet and wake our loop.

We do not use paho's built-in reconnect: it would re-use the Will of the first CONNECT.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any, cast

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from andon.mqtt.interface import (
    AckingMessageHandler,
    BrokerClientStats,
    ConnectionListener,
    MessageHandler,
    MqttEndpoint,
    WillFactory,
)

__all__ = ["PahoBrokerClient", "Ticket"]

log = logging.getLogger(__name__)

_LOOP_TIMEOUT_S = 0.5  # select() timeout; only bounds how soon stop/connect-timeout are noticed


def _network_thread_writes(_client: paho.Client, _userdata: Any, _sock: Any) -> None:
    """Nothing to do: our loop selects on the socket whenever paho has bytes to write."""


class Ticket:
    """A ``PublishTicket``: resolved once, True on PUBACK, False when the session ended first."""

    __slots__ = ("_event", "_ok")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._ok = False

    @classmethod
    def failed(cls) -> Ticket:
        ticket = cls()
        ticket._event.set()
        return ticket

    def _resolve(self, ok: bool) -> None:
        if not self._event.is_set():
            self._ok = ok
            self._event.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout) and self._ok

    @property
    def acknowledged(self) -> bool:
        return self._event.is_set() and self._ok

    @property
    def done(self) -> bool:
        return self._event.is_set()


class _Subscription:
    __slots__ = ("event", "ok")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.ok = False


class _Session:
    """State of one paho client / one TCP connection. Guarded by ``PahoBrokerClient._lock``."""

    def __init__(self, client: paho.Client, attempt: int) -> None:
        self.client = client
        self.attempt = attempt  # 1 + failed attempts before this one, for the recovery log
        self.connected = False
        self.ended = False
        self.tickets: dict[int, Ticket] = {}
        self.early_acks: set[int] = set()  # PUBACK seen before publish() registered the mid
        self.subs: dict[int, _Subscription] = {}
        self.early_subacks: dict[int, bool] = {}
        self.disconnect_reason = "connection lost"


class PahoBrokerClient:
    """One MQTT session to one broker, reconnecting with jittered exponential backoff."""

    def __init__(
        self,
        endpoint: MqttEndpoint,
        on_message: MessageHandler | AckingMessageHandler,
        listener: ConnectionListener,
        will_factory: WillFactory | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._on_message = on_message
        self._listener = listener
        self._will_factory = will_factory
        self._lock = threading.Lock()
        self._session: _Session | None = None
        self._stopping = threading.Event()
        self._events: queue.SimpleQueue[tuple[str, str] | None] = queue.SimpleQueue()
        self._conn_thread: threading.Thread | None = None
        self._dispatch_thread: threading.Thread | None = None
        self._connects = 0
        self._disconnects = 0
        self._published = 0
        self._acked = 0
        self._publish_failed = 0
        self._queue_full = False  # a "queue full" refusal was logged; cleared by a success
        self._last_error: str | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._conn_thread is not None:
            raise RuntimeError("PahoBrokerClient.start() called twice")
        name = f"andon-mqtt-{self._endpoint.client_id or 'anon'}"
        self._dispatch_thread = threading.Thread(
            target=self._dispatch, name=f"{name}-events", daemon=True
        )
        self._conn_thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._dispatch_thread.start()
        self._conn_thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Send DISCONNECT (the broker drops the Will), stop reconnecting, join both threads."""
        self._stopping.set()
        self.disconnect()
        current = threading.current_thread()
        if self._conn_thread is not None and self._conn_thread is not current:
            self._conn_thread.join(timeout)
        self._events.put(None)
        # stop() may be called from a listener callback; a thread cannot join itself.
        if self._dispatch_thread is not None and self._dispatch_thread is not current:
            self._dispatch_thread.join(timeout)

    def disconnect(self) -> None:
        with self._lock:
            session = self._session
            if session is None or session.ended:
                return
            session.disconnect_reason = "disconnect requested"
        session.client.disconnect()  # thread-safe in paho: queues DISCONNECT, wakes the loop

    def _abort(self) -> None:
        """Test-only: die like a killed process. The socket is shut down without DISCONNECT, so
        the broker publishes the Will; the client does not reconnect afterwards."""
        self._stopping.set()
        with self._lock:
            session = self._session
        if session is not None:
            sock = session.client.socket()
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):  # already closed: nothing left to abort
                    sock.shutdown(socket.SHUT_RDWR)

    # ------------------------------------------------------------------ operations

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._session is not None and self._session.connected

    def stats(self) -> BrokerClientStats:
        with self._lock:
            return BrokerClientStats(
                connected=self._session is not None and self._session.connected,
                connects_total=self._connects,
                disconnects_total=self._disconnects,
                published_total=self._published,
                acked_total=self._acked,
                publish_failed_total=self._publish_failed,
                last_error=self._last_error,
            )

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> Ticket:
        with self._lock:
            session = self._session
            if session is None or not session.connected:
                # paho would queue it for a later session; we fail fast so the caller's spool
                # stays the only place where unacknowledged data lives.
                self._publish_failed += 1
                return Ticket.failed()
        # Not under our lock: paho calls on_publish while holding its own mutex, and on_publish
        # takes our lock; holding ours here while paho takes its mutex would be a lock inversion.
        info = session.client.publish(topic, payload, qos=qos, retain=retain)
        ticket = Ticket()
        with self._lock:
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS or session.ended:
                self._publish_failed += 1
                if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE and not self._queue_full:
                    # Once per episode: a caller retrying a full queue must not flood the log.
                    self._queue_full = True
                    log.warning(
                        "MQTT publishes refused: the client queue to %s is full (%d messages "
                        "waiting); counted in publish_failed until it drains",
                        self._endpoint.address,
                        self._endpoint.max_queued,
                    )
                ticket._resolve(False)
                return ticket
            self._queue_full = False
            self._published += 1
            if info.mid in session.early_acks:
                session.early_acks.discard(info.mid)
                self._acked += 1
                ticket._resolve(True)
            else:
                session.tickets[info.mid] = ticket
        return ticket

    def subscribe(self, filters: Sequence[tuple[str, int]], timeout: float = 10.0) -> bool:
        if self._conn_thread is threading.current_thread():
            raise RuntimeError("subscribe() from the network thread would deadlock on the SUBACK")
        with self._lock:
            session = self._session
            if session is None or not session.connected:
                return False
        result, mid = session.client.subscribe(list(filters))
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            return False
        with self._lock:
            if mid in session.early_subacks:
                return session.early_subacks.pop(mid)
            if session.ended:
                return False
            sub = session.subs[mid] = _Subscription()
        if not sub.event.wait(timeout):
            with self._lock:
                session.subs.pop(mid, None)
            return False
        return sub.ok

    # ------------------------------------------------------------------ connection thread

    def _run(self) -> None:
        attempt = 0  # consecutive failed attempts since the last successful session
        delay = self._endpoint.backoff_initial_s
        while not self._stopping.is_set():
            attempt += 1
            error = self._run_session(attempt)
            if error is None:  # a session was up; start the backoff from scratch
                attempt, delay = 0, self._endpoint.backoff_initial_s
                if self._stopping.is_set():
                    break
                continue  # reconnect at once after a session that was up
            with self._lock:
                self._last_error = error
            if attempt == 1:
                log.warning(
                    "MQTT broker %s unreachable: %s; retrying with backoff",
                    self._endpoint.address,
                    error,
                )
            else:
                log.debug("MQTT attempt %d to %s: %s", attempt, self._endpoint.address, error)
            # Jitter spreads reconnect storms when a broker restarts under hundreds of edges.
            if self._stopping.wait(delay * random.uniform(0.8, 1.2)):
                break
            delay = min(delay * 2, self._endpoint.backoff_max_s)

    def _new_client(self) -> paho.Client:
        ep = self._endpoint
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=ep.client_id,
            clean_session=ep.clean_session,
            protocol=paho.MQTTv311,
            reconnect_on_failure=False,
            manual_ack=ep.manual_ack,
        )
        client.connect_timeout = ep.connect_timeout_s
        # Keeps publish() from writing on the caller's thread (see the module docstring).
        client.on_socket_register_write = _network_thread_writes
        client.on_socket_unregister_write = _network_thread_writes
        client.max_inflight_messages_set(ep.max_inflight)
        client.max_queued_messages_set(ep.max_queued)
        if ep.username is not None:
            client.username_pw_set(ep.username, ep.password)
        if ep.tls is not None:
            client.tls_set(
                ca_certs=ep.tls.ca_file, certfile=ep.tls.cert_file, keyfile=ep.tls.key_file
            )
            client.tls_insecure_set(ep.tls.insecure)
        will = self._will_factory() if self._will_factory is not None else None
        if will is not None:
            client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        return client

    def _run_session(self, attempt: int) -> str | None:
        """One connection attempt and, if it succeeds, the whole session.

        Returns None if a session was established (whatever ended it), else the error text.
        """
        try:
            client = self._new_client()
        except Exception as exc:  # a broken will_factory or TLS file must not kill the thread
            log.exception("MQTT client setup failed")
            return f"client setup failed: {exc}"
        session = _Session(client, attempt)
        client.on_connect = self._cb_connect(session)
        client.on_disconnect = self._cb_disconnect(session)
        client.on_publish = self._cb_publish(session)
        client.on_subscribe = self._cb_subscribe(session)
        client.on_message = (
            self._cb_acked_message(session) if self._endpoint.manual_ack else self._cb_message
        )
        with self._lock:
            self._session = session
        try:
            client.connect(self._endpoint.host, self._endpoint.port, self._endpoint.keepalive_s)
        except (OSError, ValueError) as exc:
            self._end_session(session)
            return str(exc) or type(exc).__name__
        deadline = time.monotonic() + self._endpoint.connect_timeout_s
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            if self._stopping.is_set() and not session.connected:
                break
            if not session.connected and time.monotonic() > deadline:
                rc = MQTTErrorCode.MQTT_ERR_CONN_REFUSED
                session.disconnect_reason = "no CONNACK before connect timeout"
                break
            rc = client.loop(_LOOP_TIMEOUT_S)
        was_up = session.connected
        sock = client.socket()
        if isinstance(sock, socket.socket):
            sock.close()  # no DISCONNECT: if the session ended abnormally the Will must fire
        self._end_session(session)
        if was_up:
            # Our own disconnect is routine; anything else is a connection change to notice.
            level = (
                logging.INFO
                if session.disconnect_reason == "disconnect requested"
                else (logging.WARNING)
            )
            log.log(
                level,
                "MQTT connection to %s closed: %s",
                self._endpoint.address,
                session.disconnect_reason,
            )
            self._events.put(("disconnected", session.disconnect_reason))
            return None
        return None if self._stopping.is_set() else session.disconnect_reason

    def _end_session(self, session: _Session) -> None:
        """Fail everything still waiting on this session: the caller re-sends from its spool."""
        with self._lock:
            if session.connected:
                self._disconnects += 1
            session.connected = False
            session.ended = True
            tickets = list(session.tickets.values())
            subs = list(session.subs.values())
            session.tickets.clear()
            session.subs.clear()
        for ticket in tickets:
            ticket._resolve(False)
        for sub in subs:
            sub.event.set()

    # ------------------------------------------------------------------ paho callbacks
    # All run on the connection (network) thread.

    def _cb_connect(self, session: _Session) -> Any:
        def on_connect(_c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if reason.is_failure:
                session.disconnect_reason = f"CONNACK refused: {reason}"
                return
            with self._lock:
                session.connected = True
                self._connects += 1
                self._last_error = None
            # Log the recovery with the attempt count; the failures in between were not logged.
            log.info(
                "MQTT connected to %s as %r%s",
                self._endpoint.address,
                self._endpoint.client_id,
                f" after {session.attempt} attempts" if session.attempt > 1 else "",
            )
            self._events.put(("connected", ""))

        return on_connect

    def _cb_disconnect(self, session: _Session) -> Any:
        def on_disconnect(_c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if session.disconnect_reason != "disconnect requested":
                session.disconnect_reason = f"connection lost ({reason})"

        return on_disconnect

    def _cb_publish(self, session: _Session) -> Any:
        def on_publish(_c: paho.Client, _u: Any, mid: int, reason: Any, _p: Any) -> None:
            with self._lock:
                ticket = session.tickets.pop(mid, None)
                if ticket is None:
                    session.early_acks.add(mid)
                    return
                self._acked += 1
            ticket._resolve(True)

        return on_publish

    def _cb_subscribe(self, session: _Session) -> Any:
        def on_subscribe(_c: paho.Client, _u: Any, mid: int, codes: Any, _p: Any) -> None:
            # MQTT 3.1.1 SUBACK carries the granted QoS per filter; 0x80 means refused.
            ok = all(not code.is_failure for code in codes)
            with self._lock:
                sub = session.subs.pop(mid, None)
                if sub is None:
                    session.early_subacks[mid] = ok
                    return
            sub.ok = ok
            sub.event.set()

        return on_subscribe

    def _cb_acked_message(self, session: _Session) -> Any:
        """With ``manual_ack``: the handler gets an ``ack`` for this message in this session."""
        handler = cast(AckingMessageHandler, self._on_message)

        def on_message(_c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
            mid, qos = message.mid, message.qos

            def ack() -> None:
                with self._lock:
                    if session.ended:  # the broker delivers it again in the next session
                        return
                if qos > 0:
                    session.client.ack(mid, qos)

            try:
                handler(message.topic, bytes(message.payload), ack)
            except Exception:  # never acknowledged: delivered again after a reconnect
                log.exception("MQTT message handler failed on %s", message.topic)

        return on_message

    def _cb_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        try:
            cast(MessageHandler, self._on_message)(message.topic, bytes(message.payload))
        except Exception:  # one bad message must not kill the network loop
            log.exception("MQTT message handler failed on %s", message.topic)

    # ------------------------------------------------------------------ dispatcher thread

    def _dispatch(self) -> None:
        while (event := self._events.get()) is not None:
            kind, reason = event
            try:
                if kind == "connected":
                    self._listener.on_connected()
                else:
                    self._listener.on_disconnected(reason)
            except Exception:
                log.exception("MQTT connection listener failed in %s", kind)
