"""EnterpriseConsumer on the in-memory broker, fed by real site outboxes and dispatchers: the
enterprise copy equals each site's records; what a site publishes while the enterprise is down
arrives later (persistent session); nothing is acknowledged before it is stored, so a consumer
that stops while its database fails gets the messages again; bad messages are dropped."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from andon.domain import AssetPath, ProductionOrder, Run
from andon.mqtt.interface import MqttEndpoint
from andon.server.enterprise_consumer import EnterpriseConsumer, EnterpriseSource
from andon.server.outbox_dispatcher import OutboxDispatcher
from andon.storage.enterprise import EnterpriseRepository, OutboxMessage
from andon.storage.mes import MesRepository
from andon.storage.mes_runs import RunRepository
from andon.storage.migrate import upgrade_database
from andon.storage.outbox import OutboxRepository, enable_outbox
from andon.storage.outbox_records import read_all_records
from andon.testing.memory_broker import InMemoryBroker
from andon.testing.processes import wait_until

TIMEOUT = 10.0
CELL = AssetPath.parse("Plant/Line/Cell")


class _Site:
    """A site database with its outbox and dispatcher on ``broker``."""

    def __init__(self, tmp_path: Path, name: str, broker: InMemoryBroker) -> None:
        url = f"sqlite:///{tmp_path / f'{name}.db'}"
        upgrade_database(url)
        self.name = name
        self.mes = MesRepository(url)
        enable_outbox(self.mes.engine, name)
        self.runs = RunRepository(self.mes.engine)
        self.outbox = OutboxRepository(self.mes.engine)
        self.dispatcher = OutboxDispatcher(
            self.outbox, MqttEndpoint(client_id=f"outbox-{name}"), broker.client_for
        )
        self.dispatcher.client.start()

    def records(self) -> dict[tuple[str, str], dict[str, Any]]:
        with self.mes.engine.connect() as connection:
            return read_all_records(connection)

    def close(self) -> None:
        self.dispatcher.client.stop()
        self.mes.close()


class _FailingFirst(EnterpriseRepository):
    """The enterprise database refuses the first ``failures`` transactions."""

    def __init__(self, url: str, failures: int) -> None:
        super().__init__(url)
        self.failures = failures

    def apply(self, messages: Sequence[OutboxMessage]) -> int:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("database unreachable")
        return super().apply(messages)


class _Quiet:
    def on_connected(self) -> None:
        pass

    def on_disconnected(self, reason: str) -> None:
        pass


@pytest.fixture
def enterprise_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'enterprise.db'}"
    upgrade_database(url)
    return url


def _source(name: str = "plants", sites: Sequence[str] = ("+",), port: int = 1883) -> Any:
    endpoint = MqttEndpoint(port=port, client_id=f"andon-enterprise-e-{name}")
    return EnterpriseSource(
        name, dataclasses.replace(endpoint, clean_session=False, manual_ack=True), tuple(sites)
    )


@pytest.fixture
def broker() -> InMemoryBroker:
    return InMemoryBroker()


@pytest.fixture
def site(tmp_path: Path, broker: InMemoryBroker) -> Iterator[_Site]:
    created = _Site(tmp_path, "Site1", broker)
    yield created
    created.close()


def _work(site: _Site, prefix: str = "R") -> None:
    site.runs.insert_missing([ProductionOrder("PO1", "item", 10)], [])
    site.runs.add_run(Run(f"{prefix}1", "PO1", CELL, 0, 100))
    site.runs.add_run(Run(f"{prefix}2", "PO1", CELL, 100, 200))
    site.runs.delete_run(f"{prefix}1")


def _drain(site: _Site) -> None:
    while site.dispatcher.publish_round():
        pass
    assert site.outbox.stats().depth == 0


def test_the_enterprise_copy_equals_the_sites(tmp_path: Path, enterprise_url: str) -> None:
    first, second = InMemoryBroker(), InMemoryBroker()
    sites = [_Site(tmp_path, "North", first), _Site(tmp_path, "South", second)]
    by_port = {1: first, 2: second}
    repository = EnterpriseRepository(enterprise_url)
    consumer = EnterpriseConsumer(
        repository,
        [_source("north", ["North"], port=1), _source("south", port=2)],
        lambda endpoint, **kw: by_port[endpoint.port].client_for(endpoint, **kw),
    )
    consumer.start()
    try:
        for site in sites:
            _work(site, prefix=site.name)
            _drain(site)
        for site in sites:
            wait_until(
                lambda s=site: repository.current(s.name) == s.records(),
                TIMEOUT,
                f"the enterprise copy of {site.name}",
            )
        deleted = repository.records("North", kind="run")
        assert [(r.record_key, r.deleted) for r in deleted] == [
            ('["North2"]', False),
            ('["North1"]', True),
        ]
        assert {s.site for s in repository.sites()} == {"North", "South"}
        assert consumer.health()["ok"]
        assert consumer.stats().malformed_total == 0
    finally:
        consumer.stop()
        repository.close()
        for site in sites:
            site.close()


def test_what_a_site_sends_while_the_enterprise_is_down_arrives_later(
    broker: InMemoryBroker, site: _Site, enterprise_url: str
) -> None:
    repository = EnterpriseRepository(enterprise_url)
    consumer = EnterpriseConsumer(repository, [_source()], broker.client_for)
    consumer.start()  # the first session subscribes
    consumer.stop()
    _work(site)
    _drain(site)  # acknowledged by the broker, kept for the enterprise's session
    assert broker.waiting("andon-enterprise-e-plants") == 3
    again = EnterpriseConsumer(repository, [_source()], broker.client_for)
    again.start()
    try:
        wait_until(lambda: repository.current("Site1") == site.records(), TIMEOUT, "the copy after")
    finally:
        again.stop()
        repository.close()


def test_nothing_is_acknowledged_before_it_is_stored(
    broker: InMemoryBroker, site: _Site, enterprise_url: str
) -> None:
    failing = _FailingFirst(enterprise_url, failures=10**6)  # the database is away
    consumer = EnterpriseConsumer(
        failing, [_source()], broker.client_for, retry_backoff_s=(0.01, 0.02)
    )
    consumer.start()
    _work(site)
    _drain(site)
    wait_until(lambda: consumer.stats().failures_total >= 3, TIMEOUT, "retries")
    consumer.stop()  # e.g. killed: nothing was stored, so nothing was acknowledged
    assert broker.waiting("andon-enterprise-e-plants") == 3
    repository = EnterpriseRepository(enterprise_url)
    again = EnterpriseConsumer(repository, [_source()], broker.client_for)
    again.start()
    try:
        wait_until(lambda: repository.current("Site1") == site.records(), TIMEOUT, "the copy")
        wait_until(lambda: again.stats().applied_total == 3, TIMEOUT, "applied")
    finally:
        again.stop()
        failing.close()
        repository.close()


def test_bad_messages_are_counted_and_dropped_the_rest_is_stored(
    broker: InMemoryBroker, site: _Site, enterprise_url: str
) -> None:
    repository = EnterpriseRepository(enterprise_url)
    consumer = EnterpriseConsumer(repository, [_source()], broker.client_for)
    consumer.start()
    publisher = broker.client("someone", on_message=lambda t, p: None, listener=_Quiet())
    publisher.start()
    try:
        assert publisher.publish("andon/v1/outbox/Site1/run", b"{not json", qos=1).wait(1)
        _work(site)
        site.dispatcher.publish_round()
        (good,) = [m for t, m, _, _ in broker.published if t.endswith("/order")]
        # A real message on the wrong topic (another site's): not taken for this one.
        assert publisher.publish("andon/v1/outbox/Site2/order", good, qos=1).wait(1)
        wait_until(lambda: consumer.stats().malformed_total == 2, TIMEOUT, "both bad ones")
        wait_until(lambda: repository.current("Site1") == site.records(), TIMEOUT, "the rest")
        assert {s.site for s in repository.sites()} == {"Site1"}
    finally:
        publisher.stop()
        consumer.stop()
        repository.close()
