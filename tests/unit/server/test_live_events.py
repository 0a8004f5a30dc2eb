"""The live event hub: tag and state changes reach each subscription through its filter, a new
client starts from a snapshot, a slow client is dropped with a reason instead of slowing ingest,
a manual edit is pushed, and closing ends every stream."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _mes_rig import CELL, T0, TAG, MesRig

from andon.domain import AssetPath
from andon.server.live_events import LiveEvents, LiveFilter, LiveSubscription, tag_json
from andon.server.live_tags import LiveTag, LiveTagTable, LiveUpdate
from andon.sparkplug.model import DataType
from andon.storage.types import Sample

OTHER = "G/N/Other/Speed"
WAIT_S = 5.0


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[MesRig]:
    rig = MesRig(f"sqlite:///{tmp_path / 'live.db'}")
    yield rig
    rig.close()


def _update(path: str, value: Any, ts_ms: int) -> LiveUpdate:
    datatype = int(DataType.INT32 if isinstance(value, int) else DataType.DOUBLE)
    return LiveUpdate(path, value, datatype, "GOOD", ts_ms, ts_ms)


def _ingest(rig: MesRig, table: LiveTagTable, path: str, value: Any, ts_ms: int) -> None:
    """As ingest does it: the MES service derives first, then the live table changes."""
    rig.service.offer([Sample(path, ts_ms, value)])
    table.apply([_update(path, value, ts_ms)])


async def _next(subscription: LiveSubscription) -> list[tuple[str, list[dict[str, Any]]]]:
    events = await subscription.next_events(WAIT_S)
    assert events is not None, "no event within the wait"
    return events


def test_tags_and_states_reach_the_subscriptions_that_want_them(rig: MesRig) -> None:
    table = LiveTagTable()
    hub = LiveEvents(table, rig.queries)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        everything = hub.subscribe(LiveFilter(), loop)
        cell_tags = hub.subscribe(LiveFilter(tag_prefix=TAG, states=False), loop)
        states_only = hub.subscribe(LiveFilter(tags=False, asset_prefix="Site/Area"), loop)
        elsewhere = hub.subscribe(LiveFilter(tags=False, asset_prefix="Site/Other"), loop)
        assert hub.client_count == 4

        _ingest(rig, table, TAG + "State", 10, T0 - 60_000)  # a Jam starts
        table.apply([_update(OTHER, 1.5, T0 - 60_000)])

        # Both batches were queued before the reader woke: it takes them in one go, in order.
        [(name, tags), (kind, states), (last, other)] = await _next(everything)
        assert name == "tags"
        assert [t["path"] for t in tags] == [TAG + "State"]
        assert tags[0] | {"ts_ms": 0} == {
            "path": TAG + "State", "value": 10, "datatype": int(DataType.INT32),
            "quality": "GOOD", "ts_ms": 0, "online": True,
        }  # fmt: skip
        assert kind == "states"
        [state] = states
        assert state["asset"] == CELL
        assert (state["name"], state["state_type"], state["reason_id"]) == (
            "Jam",
            "unplanned_downtime",
            "jam",
        )
        assert state["reason"] == "Mechanical / Jam"
        assert state["since_ms"] == T0 - 60_000
        assert (last, [t["path"] for t in other]) == ("tags", [OTHER])

        assert await _next(cell_tags) == [("tags", tags)]  # only the cell's tags, no states
        assert [name for name, _ in await _next(states_only)] == ["states"]
        assert await elsewhere.next_events(0.05) is None  # nothing for other assets
        for subscription in (everything, cell_tags, states_only, elsewhere):
            hub.unsubscribe(subscription)
        assert hub.client_count == 0

    asyncio.run(scenario())


def test_a_new_client_starts_from_a_snapshot(rig: MesRig) -> None:
    table = LiveTagTable()
    hub = LiveEvents(table, rig.queries)
    _ingest(rig, table, TAG + "State", 1, T0 - 120_000)
    table.apply([_update(OTHER, 2.5, T0 - 100_000)])

    cell = hub.snapshot(LiveFilter(tag_prefix=TAG))
    assert [name for name, _ in cell] == ["tags", "states"]
    assert [t["path"] for t in cell[0][1]] == [TAG + "State"]
    assert cell[1][1][0]["name"] == "Running"
    assert hub.snapshot(LiveFilter(tag_prefix="nothing/", asset_prefix="Site/Other")) == []
    [(name, tags)] = hub.snapshot(LiveFilter(states=False))
    assert name == "tags"
    assert [t["path"] for t in tags] == [TAG + "State", OTHER]


def test_a_slow_client_is_dropped_with_a_reason_and_others_keep_going(rig: MesRig) -> None:
    table = LiveTagTable()
    hub = LiveEvents(table, rig.queries, client_capacity=3)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        slow = hub.subscribe(LiveFilter(states=False), loop)
        reader = hub.subscribe(LiveFilter(states=False), loop)
        for i in range(2):
            table.apply([_update(OTHER, float(i), T0 + i)])
            assert [t["value"] for _, items in await _next(reader) for t in items] == [float(i)]
        # Ingest never waits: the batch that overflows the slow client's buffer returns at once.
        table.apply([_update(OTHER, 9.0, T0 + 5), _update(OTHER + "2", 1.0, T0 + 5)])
        assert slow.end_reason == "too slow: more than 3 values were waiting to be sent"
        assert await _next(slow) == []  # woken to say goodbye; its queue was let go
        assert len(await _next(reader)) == 1  # the other client got the batch
        hub.unsubscribe(slow)
        assert hub.dropped_total == 1
        assert hub.client_count == 1
        hub.unsubscribe(reader)

    asyncio.run(scenario())


def test_changes_from_another_thread_wake_the_reader(rig: MesRig) -> None:
    table = LiveTagTable()
    hub = LiveEvents(table, rig.queries)

    async def scenario() -> None:
        subscription = hub.subscribe(LiveFilter(), asyncio.get_running_loop())
        ingest = threading.Thread(target=table.apply, args=([_update(OTHER, 4.0, T0)],))
        ingest.start()
        events = await _next(subscription)
        ingest.join()
        assert events[0][1][0]["value"] == 4.0
        assert await subscription.next_events(0.05) is None  # a heartbeat's worth of quiet
        hub.unsubscribe(subscription)

    asyncio.run(scenario())


def test_a_manual_edit_is_pushed_with_the_new_reason(rig: MesRig) -> None:
    table = LiveTagTable()
    hub = LiveEvents(table, rig.queries)
    rig.service.edit_listeners.append(hub.asset_changed)
    _ingest(rig, table, TAG + "State", 10, T0 - 60_000)

    async def scenario() -> None:
        subscription = hub.subscribe(LiveFilter(tags=False), asyncio.get_running_loop())
        await asyncio.to_thread(
            rig.service.assign_reason, AssetPath.parse(CELL), T0 - 60_000, "blocked",
            lambda connection, changes: None,
        )  # fmt: skip
        [(name, [state])] = await _next(subscription)
        assert name == "states"
        assert (state["reason_id"], state["reason"]) == ("blocked", "Line / Blocked")
        hub.unsubscribe(subscription)

    asyncio.run(scenario())


def test_close_ends_every_stream_and_later_ones_at_once(rig: MesRig) -> None:
    table = LiveTagTable()
    hub = LiveEvents(table, rig.queries)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        open_one = hub.subscribe(LiveFilter(), loop)
        hub.close()
        assert await _next(open_one) == []
        assert open_one.end_reason == "the server is stopping"
        late = hub.subscribe(LiveFilter(), loop)
        assert late.end_reason == "the server is stopping"
        assert hub.client_count == 0

    asyncio.run(scenario())
    table.apply([_update(OTHER, 1.0, T0)])  # the listener is gone: nothing to hand over


def test_values_json_cannot_carry_are_made_json(rig: MesRig) -> None:
    tag = LiveTag("p", float("nan"), int(DataType.DOUBLE), "GOOD", 1, 1)
    assert tag_json(tag)["value"] is None
    assert tag_json(tag._replace(value=b"\x00\x01"))["value"] == "AAE="
    assert tag_json(tag._replace(value=(1.0, float("inf"))))["value"] == [1.0, None]
