"""Forwarding wired into ``MesServer`` on the in-memory broker: one server that is a site
(``[outbox]``) and its own enterprise (``[enterprise]``, the same broker) ends up with a copy
equal to its MES records, reports the outbox on health and metrics; and the settings."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from andon.domain import AssetPath, Run
from andon.server.forwarding import enterprise_sources
from andon.server.mes_server import MesServer
from andon.settings import ServerSettings, load_settings
from andon.storage.outbox_records import read_all_records
from andon.storage.types import Sample
from andon.testing.memory_broker import InMemoryBroker
from andon.testing.processes import wait_until

REPO = Path(__file__).resolve().parents[3]
FILLER = "Plant1/Bottling/Line1/Filler1"
FILLER_TAG = "DemoPlant/Line1/Filler1/"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MesServer]:
    broker = InMemoryBroker()
    settings = ServerSettings(
        host_id="site",
        database_url=f"sqlite:///{tmp_path / 'site.db'}",
        plant_file=REPO / "examples" / "plant.toml",
        outbox={"enabled": True, "site": "Plant1"},
        enterprise={"enabled": True},
    )
    mes = MesServer(settings, client_factory=broker.client_for, serve_http=False)
    mes.start()
    try:
        assert mes.host.wait_online(5.0)
        yield mes
    finally:
        mes.stop()


def _site_records(mes: MesServer) -> dict[tuple[str, str], dict[str, Any]]:
    with mes.mes_repository.engine.connect() as connection:
        return read_all_records(connection)


def test_a_site_and_its_enterprise_hold_the_same_records(server: MesServer) -> None:
    records = server.forwarding.enterprise_records
    assert records is not None
    assert server.forwarding.outbox is not None
    # The plant file's orders and runs are records too (queued when it loaded).
    wait_until(lambda: records.current("Plant1") == _site_records(server), 10.0, "plant file")
    assert {kind for kind, _ in _site_records(server)} >= {"order", "run"}

    now = time.time_ns() // 1_000_000
    server._derive([Sample(FILLER_TAG + "State/Code", now - 5000, 1)])
    server._derive([Sample(FILLER_TAG + "State/Code", now - 2000, 5)])
    assert server.historian.flush(10.0)
    assert server.mes is not None
    server.mes.run_repository.add_run(
        Run("R-new", "PO-1001", AssetPath.parse("Plant1/Processing/Line2/Mixer2"), now - 1, now)
    )
    outbox = server.forwarding.outbox.repository

    def converged() -> bool:  # the rows go after the PUBACK, maybe after the copy is stored
        return outbox.stats().depth == 0 and records.current("Plant1") == _site_records(server)

    wait_until(converged, 10.0, "derived records")
    kinds = {kind for kind, _ in _site_records(server)}
    assert {"state_interval", "rollup"} <= kinds

    health = server.health()
    assert health["outbox"]["ok"]
    assert health["outbox"]["depth"] == 0
    assert health["outbox"]["published_total"] > 0
    assert health["enterprise"]["ok"]
    assert health["enterprise"]["sources"] == {"local": True}
    metrics = server.metrics.render().decode()
    assert "andon_outbox_depth 0.0" in metrics
    assert "andon_enterprise_applied_total" in metrics


def test_enterprise_sources_are_persistent_sessions_with_stable_ids(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text(
        'host_id = "hq"\n[enterprise]\nenabled = true\n'
        '[[enterprise.sources]]\nname = "north"\nsites = ["North"]\n'
        '[enterprise.sources.mqtt]\nhost = "north.example"\nport = 8883\n'
    )
    (north,) = enterprise_sources(load_settings(ServerSettings, config))
    assert (north.name, north.sites) == ("north", ("North",))
    endpoint = north.endpoint
    assert (endpoint.host, endpoint.port, endpoint.client_id) == (
        "north.example",
        8883,
        "andon-enterprise-hq-north",
    )
    assert (endpoint.clean_session, endpoint.manual_ack) == (False, True)
    (local,) = enterprise_sources(ServerSettings(host_id="hq"))  # none: its own broker
    assert (local.name, local.sites, local.endpoint.port) == ("local", ("+",), 1883)


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"outbox": {"site": "Plant/1"}}, "outbox.site"),
        ({"outbox": {"topic_prefix": "andon/#"}}, "outbox.topic_prefix"),
        ({"outbox": {"batch_size": 0}}, "outbox.batch_size"),
        ({"enterprise": {"sources": [{"name": "a"}, {"name": "a"}]}}, "named twice"),
        ({"enterprise": {"sources": [{"name": "a", "sites": ["+", "x/y"]}]}}, "sites"),
    ],
)
def test_bad_forwarding_settings_are_one_clear_error(
    overrides: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ValueError, match="invalid settings") as caught:
        load_settings(ServerSettings, None, **overrides)
    assert complaint in str(caught.value)
