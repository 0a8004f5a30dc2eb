"""Walking skeleton, single-box stack: andon edge -> embedded NATS -> andon server -> SQLite.

Real child processes on free localhost ports. The edge's simulator records every value it
produces; after a clean stop of the edge, the history must hold each of them exactly once.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from andon.mqtt.embedded_broker import EmbeddedNatsBroker
from andon.testing.ports import free_port
from andon.testing.processes import AndonRig

pytestmark = pytest.mark.integration

#: A generic plant wide enough to produce a few thousand values in seconds (~260 values/s),
#: with state durations compressed 30x so machines change state during the test.
SIMULATOR = {"machines": 20, "tags_per_machine": 25, "time_scale": 30.0, "seed": 11}
VALUES_WANTED = 3000


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[EmbeddedNatsBroker]:
    broker = EmbeddedNatsBroker(tmp_path / "nats", mqtt_port=free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def rig(tmp_path: Path, nats: EmbeddedNatsBroker) -> Iterator[AndonRig]:
    database = tmp_path / "andon" / "andon.db"
    with AndonRig(
        tmp_path / "andon",
        mqtt_port=nats.port,
        database_url=f"sqlite:///{database}",
        simulator=SIMULATOR,
    ) as andon:
        yield andon


def test_every_simulated_value_reaches_sqlite_exactly_once(rig: AndonRig) -> None:
    rig.start_server()
    rig.start_edge()
    produced = rig.wait_for_recorded(VALUES_WANTED, timeout=45.0)

    code = rig.stop_edge(signum=signal.SIGINT)  # Ctrl-C is a clean stop too
    assert code == 0, f"the edge did not stop cleanly (exit code {code})\n{rig.describe()}"
    result = rig.wait_for_history(timeout=30.0)

    print(f"nats+sqlite: {produced} values seen while running; {result.summary()}")
    assert result.recorded_values >= VALUES_WANTED
    assert result.exact, f"{result.summary()}\n{rig.describe()}"
    assert rig.server.running, rig.describe()
    assert rig.stop_server() == 0, rig.describe()
