"""An enterprise server as a child process, and the check that its copy equals a site's records
(the S-07 tests: ``test_outbox_enterprise``, ``test_outbox_failover``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from andon.storage.engine import create_engine_for
from andon.storage.enterprise import EnterpriseRecord, EnterpriseRepository
from andon.storage.outbox import OutboxRepository
from andon.storage.outbox_records import read_all_records
from andon.testing.http_auth import forget_token, login, register_token
from andon.testing.ports import free_port
from andon.testing.processes import (
    RIG_ADMIN_PASSWORD,
    AndonProcess,
    http_get_json,
    wait_for_http,
    wait_until,
    write_toml,
)

__all__ = ["EnterpriseServer", "SiteCopyCheck"]

Records = dict[tuple[str, str], dict[str, Any]]


class EnterpriseServer:
    """``andon server`` with ``[enterprise]`` on, no plant, ignoring the Sparkplug traffic."""

    def __init__(self, workdir: Path, mqtt_port: int, database_url: str, site: str) -> None:
        self.site = site
        self.http_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.http_port}"
        config = write_toml(
            workdir / "enterprise.toml",
            {
                "host_id": "enterprise",
                "database_url": database_url,
                "http_port": self.http_port,
                "initial_admin_password": RIG_ADMIN_PASSWORD,
                "sparkplug_filter": "spBv1.0/NoSuchGroup/#",
                "mqtt": {"port": mqtt_port},
                "enterprise": {"enabled": True, "batch_size": 200},
            },
        )
        self.process = AndonProcess(
            ["server", "--config", str(config)],
            workdir / "enterprise.log",
            name="andon server (enterprise)",
            cwd=workdir,
        )
        self.repository = EnterpriseRepository(database_url)

    def start(self, timeout: float = 60.0) -> None:
        self.process.start()
        wait_for_http(f"{self.base_url}/api/v1/health", timeout, processes=[self.process])
        register_token(self.base_url, login(self.base_url, "admin", RIG_ADMIN_PASSWORD))

    def records(self) -> int:
        """Records (tombstones too) of the site, through the API."""
        sites = http_get_json(f"{self.base_url}/api/v1/enterprise/sites")["sites"]
        return sum(s["records"] + s["deleted"] for s in sites if s["site"] == self.site)

    def health(self) -> dict[str, Any]:
        component: dict[str, Any] = http_get_json(f"{self.base_url}/api/v1/health")["components"][
            "enterprise"
        ]
        return component

    def close(self) -> None:
        self.process.stop()
        forget_token(self.base_url)
        self.repository.close()


class SiteCopyCheck:
    """Compares a site database's MES records with the enterprise's copy of that site."""

    def __init__(self, site_url: str, enterprise: EnterpriseServer) -> None:
        self.engine = create_engine_for(site_url)
        self.outbox = OutboxRepository(self.engine)
        self.enterprise = enterprise
        self.site_records: Records = {}

    def _read(self) -> Records:
        with self.engine.connect() as connection:
            return read_all_records(connection)

    def converged(self) -> bool:
        """The site's outbox is empty and the copy equals its records."""
        if self.outbox.stats().depth:
            return False
        self.site_records = self._read()
        return self.enterprise.repository.current(self.enterprise.site) == self.site_records

    def difference(self) -> str:
        held = self.enterprise.repository.current(self.enterprise.site)
        site = self.site_records
        missing = [k for k in site if k not in held]
        extra = [k for k in held if k not in site]
        changed = [k for k in site if k in held and held[k] != site[k]]
        return (
            f"the enterprise copy equal to the site's records: outbox depth "
            f"{self.outbox.stats().depth}, site {len(site)}, enterprise {len(held)}, missing "
            f"{len(missing)} {missing[:3]}, extra {len(extra)} {extra[:3]}, changed "
            f"{len(changed)} {[(k, site[k], held[k]) for k in changed[:1]]}"
        )

    def wait_equal(self, timeout: float) -> list[EnterpriseRecord]:
        """Wait until the copy is exact; check each key is held once; return what is held."""
        wait_until(self.converged, timeout, self.difference)
        held = self.enterprise.repository.records(self.enterprise.site, limit=10_000)
        assert len(held) < 10_000, "more records than one page: page through them"
        assert len({(r.kind, r.record_key) for r in held}) == len(held)  # each key once
        assert len([r for r in held if not r.deleted]) == len(self.site_records)
        assert all((r.kind, r.record_key) not in self.site_records for r in held if r.deleted)
        return held

    def close(self) -> None:
        self.engine.dispose()
