"""A Mosquitto child process for tests and benchmarks, on a free port, with its own config.

It runs the *shipped* production config (``deploy/mosquitto/andon.conf``) so the tuned queue
limits are what the tests exercise; only the deployment-specific lines (listeners, passwords,
TLS files, paths, syslog) are replaced by a localhost test listener and paths in ``data_dir``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from andon.mqtt.embedded_broker import BrokerProcess
from andon.testing.ports import free_port

__all__ = ["SHIPPED_MOSQUITTO_CONF", "MosquittoBroker", "find_mosquitto", "mosquitto_test_config"]

SHIPPED_MOSQUITTO_CONF = Path(__file__).resolve().parents[3] / "deploy" / "mosquitto" / "andon.conf"

# Directives that name host paths, listeners or credentials of a real installation.
_REPLACED = frozenset(
    {
        "listener",
        "allow_anonymous",
        "password_file",
        "acl_file",
        "persistence_location",
        "log_dest",
        "cafile",
        "capath",
        "certfile",
        "keyfile",
        "tls_version",
        "require_certificate",
        "use_identity_as_username",
        "pid_file",
        "user",
    }
)


def find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found is None and os.access("/usr/sbin/mosquitto", os.X_OK):
        found = "/usr/sbin/mosquitto"
    return found


def mosquitto_test_config(base: str, port: int, data_dir: Path, host: str = "127.0.0.1") -> str:
    """``base`` without its deployment lines, plus an anonymous listener on ``host:port``."""
    kept = [
        line
        for line in base.splitlines()
        if not line.strip() or line.lstrip().startswith("#") or line.split()[0] not in _REPLACED
    ]
    extra = [
        "",
        "# --- added by andon.testing.brokers ---",
        f"listener {port} {host}",
        "allow_anonymous true",
        f"persistence_location {data_dir}/",
        "log_dest stderr",
    ]
    if os.geteuid() == 0:
        # Started as root, Mosquitto switches to user "mosquitto", which cannot write data_dir.
        extra.append("user root")
    return "\n".join([*kept, *extra]) + "\n"


class MosquittoBroker(BrokerProcess):
    """``mosquitto -c <generated conf>`` as a child process; same API as EmbeddedNatsBroker."""

    log_name = "mosquitto.log"

    def __init__(
        self,
        config_text: str | None = None,
        port: int | None = None,
        data_dir: Path | None = None,
        binary: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        if data_dir is None:
            raise ValueError("MosquittoBroker needs a data_dir (use pytest's tmp_path)")
        super().__init__(data_dir, port if port is not None else free_port(), host)
        self.base_config = (
            config_text if config_text is not None else SHIPPED_MOSQUITTO_CONF.read_text()
        )
        binary = binary or find_mosquitto()
        if binary is None:
            raise FileNotFoundError("mosquitto binary not found")
        self.binary = binary

    @property
    def config_path(self) -> Path:
        return self.data_dir / "mosquitto.conf"

    def _command(self) -> list[str]:
        self.config_path.write_text(
            mosquitto_test_config(self.base_config, self.port, self.data_dir, self.host)
        )
        return [self.binary, "-c", str(self.config_path)]
