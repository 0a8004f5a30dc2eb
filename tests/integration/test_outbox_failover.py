"""Site -> enterprise forwarding through a site leader failover (checklist S-07, second half):
two site nodes of a redundant pair share one SQLite database (historian, arbiter and outbox),
the demo plant's Line1 is simulated, an enterprise server on PostgreSQL consumes the feed, all
on Mosquitto. The active node is killed with kill -9 mid-stream; the standby takes over and
forwards what the dead leader left in the outbox and what it derives itself. Once the plant
stops, the enterprise holds exactly the site's MES records, each key once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import _cluster_fixtures
import pytest
from _enterprise_rig import EnterpriseServer, SiteCopyCheck

from andon.demo import demo_plant_file
from andon.testing.brokers import MosquittoBroker
from andon.testing.cluster_rig import ClusterRig, EdgeSpec
from andon.testing.processes import wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.mosquitto,
]

make_cluster = _cluster_fixtures.make_cluster
mosquitto = _cluster_fixtures.mosquitto

SITE = "Plant1"
TIMEOUT = 60.0


def test_the_enterprise_holds_exactly_the_sites_records_through_a_leader_failover(
    tmp_path: Path,
    make_cluster: Callable[..., ClusterRig],
    mosquitto: MosquittoBroker,
    postgres_url: str,
) -> None:
    port = mosquitto.port
    site_url = f"sqlite:///{tmp_path / 'site.db'}"
    enterprise = EnterpriseServer(tmp_path / "enterprise", port, postgres_url, SITE)
    rig = make_cluster(
        nodes=["a", "b"],
        database_url=site_url,
        edges=[
            EdgeSpec(
                edge_node_id="Line1",
                group_id="DemoPlant",
                simulator={"line": "Line1", "time_scale": 20.0, "seed": 5},
            )
        ],
        server_extra={
            "plant_file": str(demo_plant_file()),
            "outbox": {"enabled": True, "site": SITE, "batch_size": 100},
        },
    )
    check = SiteCopyCheck(site_url, enterprise)
    try:
        enterprise.start()
        rig.start_nodes()
        assert rig.wait_active() == "a", rig.describe()
        rig.start_edges()
        watched = [enterprise.process, *rig.running()]
        wait_until(lambda: enterprise.records() >= 30, TIMEOUT, "first records", processes=watched)

        rig.kill("a")  # the leader dies mid-stream, its outbox rows stay in the shared database
        before = enterprise.records()
        assert rig.wait_active(timeout=15) == "b", rig.describe()
        wait_until(
            lambda: enterprise.records() > before,
            TIMEOUT,
            "records forwarded by the new leader",
            processes=[enterprise.process, *rig.running()],
        )
        rig.wait_recorded(rig.recorded_count() + 200, timeout=TIMEOUT)

        assert rig.stop_edges() == [0], rig.describe()
        held = check.wait_equal(TIMEOUT)
        kinds = sorted({kind for kind, _ in check.site_records})
        print(
            f"S-07 failover: {len(check.site_records)} site records ({kinds}), "
            f"{len(held) - len(check.site_records)} tombstones; enterprise "
            f"{json.dumps(enterprise.health())}"
        )
    finally:
        enterprise.close()
        check.close()
