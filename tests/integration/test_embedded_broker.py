"""Broker child processes: persistence across restarts, death with the parent, shipped config;
the paho client against them."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from andon.mqtt.embedded_broker import BrokerProcess, EmbeddedNatsBroker
from andon.mqtt.interface import MqttEndpoint
from andon.mqtt.paho_client import PahoBrokerClient
from andon.testing.brokers import MosquittoBroker
from andon.testing.ports import free_port, port_is_open

pytestmark = pytest.mark.integration
TIMEOUT = 15.0


class _Listener:
    def __init__(self) -> None:
        self.events: queue.Queue[str] = queue.Queue()
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()

    def __call__(self, topic: str, payload: bytes) -> None:
        self.messages.put((topic, payload))

    def on_connected(self) -> None:
        self.events.put("connected")

    def on_disconnected(self, reason: str) -> None:
        self.events.put("disconnected")


def _client(port: int, client_id: str) -> tuple[PahoBrokerClient, _Listener]:
    listener = _Listener()
    client = PahoBrokerClient(MqttEndpoint(port=port, client_id=client_id), listener, listener)
    client.start()
    assert listener.events.get(timeout=TIMEOUT) == "connected"
    return client, listener


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[EmbeddedNatsBroker]:
    with EmbeddedNatsBroker(tmp_path / "nats", free_port()) as broker:
        assert isinstance(broker, EmbeddedNatsBroker)
        yield broker


@pytest.mark.parametrize("crash", [False, True], ids=["sigterm", "sigkill"])
def test_nats_keeps_retained_messages_across_restart(nats: EmbeddedNatsBroker, crash: bool) -> None:
    client, _ = _client(nats.port, "writer")
    assert client.publish("spBv1.0/STATE/h1", b"online", qos=1, retain=True).wait(TIMEOUT)
    client.stop()
    if crash:
        nats.kill()
    else:
        nats.stop()
    assert not nats.running
    nats.start()
    reader, listener = _client(nats.port, "reader")
    try:
        assert reader.subscribe([("spBv1.0/STATE/#", 1)])
        assert listener.messages.get(timeout=TIMEOUT) == ("spBv1.0/STATE/h1", b"online")
    finally:
        reader.stop()
    assert (nats.data_dir / "jetstream").is_dir()
    assert "Server is ready" in nats.log_path.read_text()


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")  # a zombie has exited; only its parent's reaping is pending


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_broker_dies_with_its_parent(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        from pathlib import Path
        from andon.mqtt.embedded_broker import EmbeddedNatsBroker
        b = EmbeddedNatsBroker(Path({str(tmp_path)!r}), {free_port()})
        b.start()
        print(b.pid, flush=True)
        input()  # block until killed
    """)
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        assert not _gone(child_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + TIMEOUT
        while not _gone(child_pid) and time.monotonic() < deadline:
            time.sleep(0.05)  # polling another process's state: there is nothing to wait on
        assert _gone(child_pid), "broker outlived its parent"
    finally:
        parent.kill()
        if not _gone(child_pid):
            os.kill(child_pid, signal.SIGKILL)


def test_start_fails_clearly_when_port_is_taken(tmp_path: Path) -> None:
    with EmbeddedNatsBroker(tmp_path / "a", free_port()) as first:
        second = EmbeddedNatsBroker(tmp_path / "b", first.port)
        with pytest.raises(RuntimeError, match="already in use"):
            second.start(timeout=TIMEOUT)
        assert not second.running
        assert port_is_open(first.port)


def _flood_slow_subscriber(broker: BrokerProcess, count: int) -> int:
    """Publish ``count`` QoS 1 messages while the subscriber's handler is blocked; return how
    many it gets once unblocked."""
    gate = threading.Event()
    received: queue.Queue[bytes] = queue.Queue()
    listener = _Listener()

    def slow_handler(_topic: str, payload: bytes) -> None:
        gate.wait(TIMEOUT)  # blocks paho's network thread: no PUBACKs, the broker queues
        received.put(payload)

    sub = PahoBrokerClient(MqttEndpoint(port=broker.port, client_id="slow"), slow_handler, listener)
    sub.start()
    pub, _ = _client(broker.port, "fast")
    try:
        assert listener.events.get(timeout=TIMEOUT) == "connected"
        assert sub.subscribe([("flood", 1)])
        tickets = [pub.publish("flood", b"%d" % i, qos=1) for i in range(count)]
        assert all(t.wait(TIMEOUT) for t in tickets)
        gate.set()
        # Both configs deliver at least 1000; only then does the end marker go out, so a full
        # queue cannot drop it. It arrives after every survivor (QoS 1 order per publisher).
        n = sum(1 for _ in range(1000) if received.get(timeout=TIMEOUT))
        assert pub.publish("flood", b"last", qos=1).wait(TIMEOUT)
        while received.get(timeout=TIMEOUT) != b"last":
            n += 1
        return n
    finally:
        gate.set()
        pub.stop()
        sub.stop()


def test_mosquitto_default_queue_limit_drops_and_shipped_config_does_not(
    tmp_path: Path, mosquitto_binary: str
) -> None:
    """Why deploy/mosquitto/andon.conf exists: with Mosquitto's defaults, a slow subscriber
    silently loses QoS 1 messages beyond max_inflight (20) + max_queued_messages (1000)."""
    with MosquittoBroker("", data_dir=tmp_path / "default", binary=mosquitto_binary) as broker:
        assert _flood_slow_subscriber(broker, 3000) < 3000
    with MosquittoBroker(data_dir=tmp_path / "shipped", binary=mosquitto_binary) as broker:
        assert isinstance(broker, MosquittoBroker)
        assert "max_queued_messages 0" in broker.config_path.read_text()
        assert _flood_slow_subscriber(broker, 3000) == 3000


def test_start_reports_a_broker_that_exits(tmp_path: Path, mosquitto_binary: str) -> None:
    broker = MosquittoBroker("no_such_option 1", data_dir=tmp_path, binary=mosquitto_binary)
    with pytest.raises(RuntimeError, match="exited"):
        broker.start(timeout=TIMEOUT)
    assert not broker.running


def test_paho_client_writes_only_from_its_network_thread(
    tmp_path: Path, mosquitto_binary: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paho's writer takes no lock. Without a loop thread of paho's own (we drive ``loop()``
    from our connection thread), ``publish()`` used to write from the caller's thread as well,
    concurrently with the network thread, and packets left out of order: an edge's NBIRTH
    reached the host after the DBIRTHs published behind it, the host asked for a rebirth and
    dropped the values in between. The broker-client contract test
    ``test_one_threads_publishes_keep_their_order_across_topics`` shows the order on the wire;
    this one shows the cause deterministically."""
    writers: set[str] = set()
    loop_write = paho.Client.loop_write

    def recording_loop_write(self: paho.Client) -> paho.MQTTErrorCode:
        writers.add(threading.current_thread().name)
        return loop_write(self)

    monkeypatch.setattr(paho.Client, "loop_write", recording_loop_write)
    with MosquittoBroker(data_dir=tmp_path, binary=mosquitto_binary) as broker:
        client, listener = _client(broker.port, "writes")
        try:
            assert client.subscribe([("w/#", 1)])  # from this thread

            sent: list[bool] = []

            def publish_some() -> None:
                tickets = [client.publish(f"w/{i % 3}", b"x", qos=i % 2) for i in range(200)]
                sent.append(all(t.wait(TIMEOUT) for t in tickets))

            publish_some()  # from this thread
            other = threading.Thread(target=publish_some, name="another-publisher")
            other.start()
            other.join(TIMEOUT)
            assert not other.is_alive()
            assert sent == [True, True]
            received = [listener.messages.get(timeout=TIMEOUT) for _ in range(400)]
        finally:
            client.stop()
    assert len(received) == 400
    assert writers == {"andon-mqtt-writes"}, f"threads that wrote to the socket: {writers}"
