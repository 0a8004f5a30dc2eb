"""Fixtures of the cluster tests: a Mosquitto broker and a ``ClusterRig`` factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from andon.testing.brokers import MosquittoBroker
from andon.testing.cluster_rig import ClusterRig

__all__ = ["SIMULATOR", "make_cluster", "mosquitto"]

#: 10 machines x 20 tags, states compressed 30x: about a hundred values a second.
SIMULATOR = {"machines": 10, "tags_per_machine": 20, "time_scale": 30.0, "seed": 11}


@pytest.fixture
def mosquitto(tmp_path: Path, mosquitto_binary: str) -> Iterator[MosquittoBroker]:
    broker = MosquittoBroker(data_dir=tmp_path / "mosquitto", binary=mosquitto_binary)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def make_cluster(tmp_path: Path, mosquitto: MosquittoBroker) -> Iterator[Callable[..., ClusterRig]]:
    """``make_cluster(nodes=[...], database_url=..., ...)``: a rig on the broker, closed after."""
    made: list[ClusterRig] = []

    def make(**options: Any) -> ClusterRig:
        options.setdefault("database_url", f"sqlite:///{tmp_path / 'andon.db'}")
        rig = ClusterRig(tmp_path / f"cluster{len(made)}", mqtt_port=mosquitto.port, **options)
        made.append(rig)
        return rig

    try:
        yield make
    finally:
        for rig in made:
            rig.close()
