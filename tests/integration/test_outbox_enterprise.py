"""Site -> enterprise forwarding on real processes (checklist S-07): a site server (demo plant's
Line1 simulated, SQLite, outbox on) and an enterprise server (PostgreSQL, consuming the feed)
on Mosquitto. The site server -- the forwarder -- is killed with kill -9 mid-stream and
restarted, then the enterprise is killed with kill -9 while the site keeps publishing, and
restarted. Once the plant stops, the enterprise holds exactly the site's MES records: every
current record with the same content, nothing missing, nothing extra, each key once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from _enterprise_rig import EnterpriseServer, SiteCopyCheck

from andon.demo import demo_plant_file
from andon.testing.brokers import MosquittoBroker
from andon.testing.processes import AndonRig, http_get_json, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.mosquitto,
]

SITE = "Plant1"
TIMEOUT = 60.0


@pytest.fixture
def mosquitto(tmp_path: Path, mosquitto_binary: str) -> Iterator[MosquittoBroker]:
    broker = MosquittoBroker(data_dir=tmp_path / "mosquitto", binary=mosquitto_binary)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_the_enterprise_holds_exactly_the_sites_records_through_kills_and_restarts(
    tmp_path: Path, mosquitto: MosquittoBroker, postgres_url: str
) -> None:
    site_url = f"sqlite:///{tmp_path / 'site' / 'site.db'}"
    enterprise = EnterpriseServer(tmp_path / "enterprise", mosquitto.port, postgres_url, SITE)
    site = AndonRig(
        tmp_path / "site",
        mqtt_port=mosquitto.port,
        database_url=site_url,
        host_id="site-host",
        group_id="DemoPlant",
        edge_node_id="Line1",
        simulator={"line": "Line1", "time_scale": 20.0, "seed": 3},
        server_extra={
            "plant_file": demo_plant_file(),
            "outbox": {"enabled": True, "site": SITE, "batch_size": 100},
        },
    )
    check = SiteCopyCheck(site_url, enterprise)
    try:
        enterprise.start()
        site.start_server()
        site.start_edge()
        everyone = [enterprise.process, site.server, site.edge]
        wait_until(lambda: enterprise.records() >= 30, TIMEOUT, "first records", processes=everyone)

        site.server.kill()  # the forwarder dies mid-stream; the edge keeps its data meanwhile
        before_restart = enterprise.records()
        site.start_server()
        wait_until(
            lambda: enterprise.records() > before_restart,
            TIMEOUT,
            "records after the site server's restart",
            processes=everyone,
        )

        before_kill = enterprise.records()
        enterprise.process.kill()  # the broker keeps what the site publishes for its session
        at_kill = site.recorded_count()
        waiting = site.wait_for_recorded(at_kill + 200, TIMEOUT) - at_kill
        enterprise.start()
        wait_until(
            lambda: enterprise.records() > before_kill,
            TIMEOUT,
            "records after the enterprise's restart",
            processes=everyone,
        )

        assert site.stop_edge() == 0, site.describe()  # the plant stops: the site settles
        check.wait_equal(TIMEOUT)
        # The site may still derive records from the last values after that (MES writes gather
        # for mes_write_delay_s): its outbox must empty again and the copy be exact again.
        wait_until(
            lambda: (
                http_get_json(f"{site.base_url}/api/v1/health")["components"]["outbox"]["depth"]
                == 0
            ),
            TIMEOUT,
            "the site's outbox never emptied",
            processes=[site.server],
        )
        held = check.wait_equal(TIMEOUT)
        kinds = {kind for kind, _ in check.site_records}
        assert {"state_interval", "count", "rollup", "order", "run"} <= kinds
        print(
            f"S-07 restarts: {len(check.site_records)} site records ({sorted(kinds)}), "
            f"{len(held) - len(check.site_records)} tombstones, {waiting} values produced while "
            f"the enterprise was down; enterprise {json.dumps(enterprise.health())}"
        )
    finally:
        site.close()
        enterprise.close()
        check.close()
