"""The enterprise's record table on SQLite and PostgreSQL: applying outbox messages is idempotent
whatever the duplicates, the order of arrival and the batching (hypothesis), tombstones delete
but keep their version, and the reads summarise each site."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from andon.storage.enterprise import (
    EnterpriseRepository,
    OutboxMessage,
    parse_outbox_message,
)
from andon.storage.migrate import upgrade_database
from andon.storage.outbox import OutboxEntry
from andon.storage.schema import enterprise_record_table


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EnterpriseRepository]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'andon.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    upgrade_database(url)
    repository = EnterpriseRepository(url, clock=lambda: 9_000)
    yield repository
    repository.close()


def _message(
    version: int, key: str = "R1", *, site: str = "S1", deleted: bool = False, value: int = 0
) -> OutboxMessage:
    record = None if deleted else {"id": key, "value": value}
    return OutboxMessage(site, "run", json.dumps([key]), version, deleted, record, version * 10)


# A site's history: each change gets the next version (the outbox id) and touches one record.
_changes = st.lists(
    st.tuples(st.sampled_from(["A", "B", "C"]), st.booleans(), st.integers(0, 5)),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(changes=_changes, data=st.data())
def test_duplicates_reordering_and_batching_change_nothing(
    repo: EnterpriseRepository, changes: list[tuple[str, bool, int]], data: st.DataObject
) -> None:
    with repo.engine.begin() as connection:
        connection.execute(enterprise_record_table.delete())
    sent = [
        _message(version, key, deleted=deleted, value=value)
        for version, (key, deleted, value) in enumerate(changes, start=1)
    ]
    # At-least-once over an unreliable link: any message may come again, in any order.
    again = data.draw(st.lists(st.sampled_from(sent), max_size=len(sent)), label="duplicates")
    arrival = data.draw(st.permutations(sent + again), label="arrival")
    cuts = sorted(data.draw(st.sets(st.integers(1, len(arrival))), label="batches"))
    for start, end in zip([0, *cuts], [*cuts, len(arrival)], strict=True):
        repo.apply(arrival[start:end])

    newest: dict[str, OutboxMessage] = {}
    for message in sent:
        newest[message.record_key] = message  # sent in version order: the last one wins
    stored = repo.records("S1", limit=100)
    assert {r.record_key: (r.version, r.deleted, r.record) for r in stored} == {
        k: (m.version, m.deleted, m.record) for k, m in newest.items()
    }
    assert repo.current("S1") == {
        ("run", k): m.record for k, m in newest.items() if m.record is not None
    }
    assert repo.apply(sent) == 0  # everything again: nothing changes


def test_a_tombstone_keeps_its_version_so_an_older_update_cannot_revive(
    repo: EnterpriseRepository,
) -> None:
    assert repo.apply([_message(1, value=1)]) == 1
    assert repo.apply([_message(3, deleted=True)]) == 1
    assert repo.apply([_message(2, value=2)]) == 0  # overtaken by the deletion
    (record,) = repo.records("S1")
    assert (record.version, record.deleted, record.record) == (3, True, None)
    assert repo.current("S1") == {}
    assert repo.apply([_message(4, value=4)]) == 1  # recreated later: back
    assert repo.current("S1") == {("run", '["R1"]'): {"id": "R1", "value": 4}}


def test_sites_and_records_pages(repo: EnterpriseRepository) -> None:
    repo.apply([_message(1, "A"), _message(2, "B"), _message(3, "C", deleted=True)])
    repo.apply([_message(5, "A", site="S2")])
    s1, s2 = repo.sites()
    assert (s1.site, s1.records, s1.deleted, s1.last_version) == ("S1", 2, 1, 3)
    assert (s1.last_created_ms, s1.last_received_ms, s1.by_kind) == (30, 9_000, {"run": 2})
    assert (s2.site, s2.records, s2.last_version) == ("S2", 1, 5)
    assert [r.version for r in repo.records("S1", since_version=1)] == [2, 3]
    assert [r.version for r in repo.records("S1", limit=2)] == [1, 2]
    assert repo.records("S1", kind="count") == []
    assert repo.records("nowhere") == []


def test_a_version_is_compared_per_site_and_kind(repo: EnterpriseRepository) -> None:
    run = _message(5, "X")
    other_site = _message(1, "X", site="S2")
    other_kind = OutboxMessage("S1", "order", run.record_key, 1, False, {"id": "X"}, 1)
    assert repo.apply([run, other_site, other_kind]) == 3
    with repo.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(
            enterprise_record_table)).scalar() == 3  # fmt: skip


def test_messages_are_parsed_strictly() -> None:
    entry = OutboxEntry(4, "S1", "run", '["R1"]', False, '{"id":"R1"}', 77)
    message = parse_outbox_message(entry.payload())
    assert message == OutboxMessage("S1", "run", '["R1"]', 4, False, {"id": "R1"}, 77)
    good = json.loads(entry.payload())
    bad_cases = [
        (b"not json", "not JSON"),
        (b"[1]", "not a JSON object"),
        ({**good, "version": "4"}, "version"),
        ({**good, "version": True}, "version"),
        ({**good, "version": 0}, "version below 1"),
        ({**good, "key": "run:other"}, "is not kind:record_key"),
        ({**good, "deleted": True}, "null exactly when deleted"),
        ({**good, "record": [1]}, "must be an object"),
        ({k: v for k, v in good.items() if k != "site"}, "'site' missing"),
    ]
    for payload, reason in bad_cases:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        with pytest.raises(ValueError, match=reason):
            parse_outbox_message(raw)
