"""Walking skeleton, production stack: andon edge -> Mosquitto -> andon server -> PostgreSQL.

Real child processes on free localhost ports. The edge's simulator records every value it
produces; after a clean stop of the edge, the history must hold each of them exactly once.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from andon.testing.brokers import MosquittoBroker
from andon.testing.processes import AndonRig

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.mosquitto]

#: A generic plant wide enough to produce a few thousand values in seconds (~260 values/s),
#: with state durations compressed 30x so machines change state during the test.
SIMULATOR = {"machines": 20, "tags_per_machine": 25, "time_scale": 30.0, "seed": 7}
VALUES_WANTED = 3000


@pytest.fixture
def mosquitto(tmp_path: Path, mosquitto_binary: str) -> Iterator[MosquittoBroker]:
    broker = MosquittoBroker(data_dir=tmp_path / "mosquitto", binary=mosquitto_binary)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def rig(tmp_path: Path, mosquitto: MosquittoBroker, postgres_url: str) -> Iterator[AndonRig]:
    with AndonRig(
        tmp_path / "andon", mqtt_port=mosquitto.port, database_url=postgres_url, simulator=SIMULATOR
    ) as andon:
        yield andon


def test_every_simulated_value_reaches_postgres_exactly_once(rig: AndonRig) -> None:
    rig.start_server()
    rig.start_edge()
    produced = rig.wait_for_recorded(VALUES_WANTED, timeout=45.0)

    code = rig.stop_edge()
    assert code == 0, f"the edge did not stop cleanly (exit code {code})\n{rig.describe()}"
    result = rig.wait_for_history(timeout=30.0)

    print(f"mosquitto+postgres: {produced} values seen while running; {result.summary()}")
    assert result.recorded_values >= VALUES_WANTED
    assert result.exact, f"{result.summary()}\n{rig.describe()}"
    assert rig.server.running, rig.describe()
    assert rig.stop_server(signum=signal.SIGINT) == 0, rig.describe()
