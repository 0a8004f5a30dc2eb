"""``andon server`` as its own process for a benchmark: started, healthy, logged in, stopped."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from andon.testing.ports import free_port
from andon.testing.processes import AndonProcess, http_get, wait_until, write_toml

__all__ = ["BenchServer", "bench_server"]

_ADMIN_PASSWORD = "bench-admin-password-0123"


@dataclass(slots=True)
class BenchServer:
    process: AndonProcess
    http_port: int

    @property
    def pid(self) -> int:
        pid = self.process.pid
        if pid is None:
            raise RuntimeError("the server is not running")
        return pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def token(self) -> str:
        """A bearer token of the admin the server was started with."""
        body = f"username=admin&password={_ADMIN_PASSWORD}".encode()
        request = urllib.request.Request(
            f"{self.base_url}/api/v1/auth/token",
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return str(json.loads(response.read())["access_token"])

    def check_running(self) -> None:
        if not self.process.running:
            raise RuntimeError(f"the server exited\n{self.process.describe()}")


@contextmanager
def bench_server(
    work: Path, database_url: str, mqtt_port: int, extra: Mapping[str, object] | None = None
) -> Iterator[BenchServer]:
    """A server on a free HTTP port with an ``admin`` user, healthy before the body runs."""
    http_port = free_port()
    config = write_toml(
        work / "server.toml",
        {
            "host_id": "andon-bench",
            "database_url": database_url,
            "http_port": http_port,
            "initial_admin_password": _ADMIN_PASSWORD,
            "mqtt": {"port": mqtt_port},
            **(extra or {}),
        },
    )
    process = AndonProcess(["server", "--config", str(config)], work / "server.log", cwd=work)
    process.start()
    try:
        wait_until(
            lambda: http_get(f"http://127.0.0.1:{http_port}/api/v1/health", token="")[0] == 200,
            120.0,
            "andon server healthy",
            processes=[process],
        )
        yield BenchServer(process, http_port)
    finally:
        process.stop()
