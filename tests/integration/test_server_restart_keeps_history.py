"""A server restart: the history survives it, and the edge buffers while the server is away.

``andon server`` on SQLite and ``andon edge`` (with ``primary_host_id``) as child processes.
The server is stopped with SIGTERM and started again on the same database while the edge keeps
running: the edge must hold its data in the spool while the host's STATE is offline and flush
it after the restart, so that at the end every value the simulator produced is in the history
exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

from andon.mqtt.embedded_broker import BrokerProcess, EmbeddedNatsBroker
from andon.testing.brokers import MosquittoBroker, find_mosquitto
from andon.testing.ports import free_port
from andon.testing.processes import AndonRig, http_get_json, wait_until

pytestmark = pytest.mark.integration

SIMULATOR = {"machines": 20, "tags_per_machine": 25, "time_scale": 30.0, "seed": 3}
#: The history of this machine's tags is compared, sample by sample, across the restart.
DEVICE = "Plant1/Edge1/M0001/"


@pytest.fixture(params=["nats", pytest.param("mosquitto", marks=pytest.mark.mosquitto)])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BrokerProcess]:
    if request.param == "nats":
        process: BrokerProcess = EmbeddedNatsBroker(tmp_path / "nats", mqtt_port=free_port())
    else:
        binary = request.getfixturevalue("mosquitto_binary")
        process = MosquittoBroker(
            data_dir=tmp_path / "mosquitto", binary=binary or find_mosquitto()
        )
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def rig(tmp_path: Path, broker: BrokerProcess) -> Iterator[AndonRig]:
    with AndonRig(
        tmp_path / "andon",
        mqtt_port=broker.port,
        database_url=f"sqlite:///{tmp_path / 'andon' / 'andon.db'}",
        simulator=SIMULATOR,
    ) as andon:
        yield andon


def _api_history(rig: AndonRig, path: str, end_ms: int) -> list[tuple[int, object]]:
    query = urlencode({"path": path, "start": 0, "end": end_ms, "limit": 100_000})
    body = http_get_json(f"{rig.base_url}/api/v1/tags/history?{query}")
    assert not body["truncated"]
    return [(s["ts_ms"], s["value"]) for s in body["samples"]]


def _spooled_values(rig: AndonRig) -> int:
    return int(str(rig.edge_status()["backlog values"]))


def test_server_restart_keeps_history_and_loses_nothing(rig: AndonRig) -> None:
    rig.start_server()
    rig.start_edge()
    rig.wait_for_recorded(1000, timeout=30.0)
    wait_until(
        lambda: rig.store.count() >= 800, 30.0, "first data in the history", processes=rig.processes
    )

    # 1. Stop the server cleanly: what it received is committed before it exits.
    assert rig.stop_server() == 0, f"the server did not stop cleanly\n{rig.describe()}"
    rows_at_stop = rig.store.count()
    tags = [t.tag for t in rig.store.tags() if t.tag.startswith(DEVICE)]
    before = {t: [(s.ts_ms, s.value) for s in rig.store.history(t, 0, 2**62)] for t in tags}
    end_ms = max(ts for samples in before.values() for ts, _ in samples) + 1
    assert tags, f"no history of {DEVICE}* before the restart\n{rig.describe()}"

    # 2. While it is away the edge keeps producing and holds the values in its spool.
    recorded_at_stop = rig.recorded_count()
    rig.wait_for_recorded(recorded_at_stop + 500, timeout=30.0)
    backlog = wait_until(
        lambda: _spooled_values(rig),
        10.0,
        "the edge spooled nothing while the server was away",
        processes=[rig.edge],
    )
    assert rig.store.count() == rows_at_stop

    # 3. Restart on the same database: the earlier history is served, new data arrives.
    rig.start_server()
    served = {t: _api_history(rig, t, end_ms) for t in tags}
    assert served == before, "the history from before the restart is not served as stored"
    wait_until(
        lambda: rig.store.count() >= rows_at_stop + backlog,
        30.0,
        lambda: f"the spooled backlog ({backlog} values) did not arrive after the restart",
        processes=rig.processes,
    )
    recorded_after_restart = rig.recorded_count()
    rig.wait_for_recorded(recorded_after_restart + 300, timeout=30.0)

    # 4. Stop the edge cleanly: every value it produced is stored exactly once.
    assert rig.stop_edge() == 0, f"the edge did not stop cleanly\n{rig.describe()}"
    result = rig.wait_for_history(timeout=30.0)
    print(
        f"server restart: {rows_at_stop} rows at the stop, {backlog} values spooled while "
        f"the server was away, {sum(map(len, before.values()))} samples of {len(tags)} tags "
        f"of {DEVICE}* served after the restart as before; "
        f"{result.summary()}"
    )
    assert result.exact, f"{result.summary()}\n{rig.describe()}"
    assert rig.stop_server() == 0, rig.describe()
