"""One contract for every HistorianStore: in memory, SQLite and PostgreSQL.

Decisions this suite pins down (see andon.storage.codec and andon.storage.store):
ranges are half-open [start, end); int64 and uint64 (0..2**64-1, for UInt64 tags) round-trip
exactly; floats round-trip bit for bit including +/-inf, except that -0.0 comes back as 0.0;
NaN round-trips for Float/Double tags and is rejected elsewhere; bools come back as bools;
unstorable values raise ValueError and the whole batch is rejected.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from andon.storage.insert_process import InsertProcessStore
from andon.storage.migrate import upgrade_database
from andon.storage.store import HistorianStore, open_historian_store
from andon.storage.types import Sample, SampleValue
from andon.testing.memory_historian import InMemoryHistorianStore

OpenStore = Callable[[], HistorianStore]
T0 = 1_700_000_000_000


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        "sqlite+insert-process",
        pytest.param("postgresql+insert-process", marks=pytest.mark.postgres),
    ]
)
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """Opens stores on one database (the same instance for memory). ``+insert-process``: the
    server's arrangement, writes in a child process (andon.storage.insert_process)."""
    opened: list[HistorianStore] = []
    if request.param == "memory":
        memory = InMemoryHistorianStore()

        def open_memory() -> HistorianStore:
            return memory

        yield open_memory
        return
    if request.param.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'historian.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    upgrade_database(url)
    in_child = request.param.endswith("+insert-process")

    def open_sql() -> HistorianStore:
        store = open_historian_store(url)
        opened.append(store)
        if in_child:
            store = InsertProcessStore(store, url)
            opened.append(store)
        return store

    yield open_sql
    for store in reversed(opened):
        store.close()


@pytest.fixture
def store(open_store: OpenStore) -> HistorianStore:
    return open_store()


def test_same_batch_twice_is_stored_once(store: HistorianStore) -> None:
    batch = [Sample("g/e/d/temp", T0 + i, float(i), datatype=10) for i in range(100)]
    assert store.write_batch(batch) == 100
    assert store.write_batch(batch) == 0
    assert store.count() == 100
    assert store.count("g/e/d/temp") == 100


def test_first_write_wins_across_and_within_batches(store: HistorianStore) -> None:
    assert store.write_batch([Sample("t", T0, 1, datatype=4)]) == 1
    assert (
        store.write_batch([Sample("t", T0, 2), Sample("t", T0 + 1, 3), Sample("t", T0 + 1, 4)]) == 1
    )
    assert [s.value for s in store.history("t", T0, T0 + 2)] == [1, 3]


def test_a_large_batch_with_stored_rows_among_new_ones(store: HistorianStore) -> None:
    # Longer than any one statement of a SQL store (SQLite writes up to 4,000 rows per
    # statement, then smaller fixed sizes): every row lands once, with its own value, whatever
    # chunk it falls in, and already stored rows count as not inserted.
    tags = [f"g/e/d{d}/v{v}" for d in range(3) for v in range(7)]
    stored = [Sample(tags[i % 21], T0 + i, -1.0, datatype=10) for i in range(0, 9_000, 7)]
    assert store.write_batch(stored) == len(stored)
    batch = [Sample(tags[i % 21], T0 + i, float(i), datatype=10) for i in range(9_000 - 1)]
    assert store.write_batch(batch) == len(batch) - len(stored)
    assert store.count() == 9_000 - 1
    values = {(s.tag, s.ts_ms): s.value for tag in tags for s in store.history(tag, T0, T0 + 9_000)}
    assert values == {
        (tags[i % 21], T0 + i): (-1.0 if i % 7 == 0 else float(i)) for i in range(9_000 - 1)
    }


# A batch of one value per tag (a wide plant at 1 Hz) and a batch of many values per tag are
# stored differently by some stores (SQLite stages the first kind, andon.storage.sqlite); what
# reads return must not depend on which kind of batch wrote a value.
WIDE_TAGS = [f"g/e/m{m}/v{v}" for m in range(40) for v in range(25)]


def _wide(ts: int, value: float) -> list[Sample]:
    return [Sample(tag, ts, value, datatype=10) for tag in WIDE_TAGS]


def test_first_write_wins_between_wide_and_deep_batches(store: HistorianStore) -> None:
    deep_tag = WIDE_TAGS[0]
    assert store.write_batch(_wide(T0, 1.0)) == len(WIDE_TAGS)
    assert store.write_batch(_wide(T0, 2.0)) == 0  # the wide batch again, other values
    deep = [Sample(deep_tag, T0 + i, 10.0 + i, datatype=10) for i in range(50)]
    assert store.write_batch(deep) == 49  # T0 was written by the wide batch
    assert store.write_batch(_wide(T0 + 1, 3.0)) == len(WIDE_TAGS) - 1  # deep_tag has T0 + 1
    assert store.write_batch(deep) == 0
    assert [s.value for s in store.history(deep_tag, T0, T0 + 3)] == [1.0, 11.0, 12.0]
    assert [s.value for s in store.history(WIDE_TAGS[1], T0, T0 + 3)] == [1.0, 3.0]
    assert store.count(deep_tag) == 50
    assert store.count() == 50 + 2 * (len(WIDE_TAGS) - 1)


def test_reads_join_values_from_wide_and_deep_batches(store: HistorianStore) -> None:
    tag = WIDE_TAGS[7]
    store.write_batch([Sample(tag, T0 + i * 100, float(i), datatype=10) for i in range(10)])
    for second in range(10, 20):  # interleaved in time with the deep batch's buckets
        store.write_batch(_wide(T0 + second * 100 - 950, float(second)))
    history = store.history(tag, T0, T0 + 1_000)
    assert [s.ts_ms for s in history] == sorted(s.ts_ms for s in history)
    assert len(history) == 20
    assert store.history(tag, T0, T0 + 1_000, limit=3) == history[:3]
    latest = store.latest(tag)
    assert latest is not None
    assert (latest.ts_ms, latest.value) == (T0 + 950, 19.0)
    buckets = store.aggregate(tag, T0, T0 + 1_000, 300)
    by_start = {b.start_ms: b for b in buckets}
    expected: dict[int, list[Sample]] = {}
    for s in history:
        expected.setdefault(s.ts_ms - s.ts_ms % 300, []).append(s)
    assert sorted(by_start) == sorted(expected)
    for start, samples in expected.items():
        values = [float(s.value) for s in samples]  # type: ignore[arg-type]
        bucket = by_start[start]
        assert (bucket.count, bucket.min, bucket.max) == (len(values), min(values), max(values))
        assert bucket.avg == pytest.approx(sum(values) / len(values))
        assert (bucket.last_ts_ms, bucket.last) == (samples[-1].ts_ms, samples[-1].value)


def test_empty_batch_writes_nothing(store: HistorianStore) -> None:
    assert store.write_batch([]) == 0
    assert store.count() == 0
    assert store.tags() == []


ROUND_TRIP: list[tuple[int, SampleValue]] = [
    (4, 0),
    (4, 2**63 - 1),
    (4, -(2**63)),
    (4, -1),
    (3, -(2**31)),
    (8, 0),
    (8, 2**63 - 1),
    (8, 2**63),
    (8, 2**64 - 1),
    (13, T0),
    (10, 0.1),
    (10, 1e308),
    (10, 5e-324),
    (10, math.inf),
    (10, -math.inf),
    (10, math.nan),
    (9, 3.4028234663852886e38),
    (9, math.nan),
    (11, True),
    (11, False),
    (12, ""),
    (12, "Grüße, 世界 🏭"),
    (14, "line\nbreak\ttab"),
    (15, "9f1c1b7e-2a3c-4a5e-8b7d-0c1d2e3f4a5b"),
    (17, b""),
    (17, bytes(range(256))),
    (10, None),
    (11, None),
    (12, None),
]


@pytest.mark.parametrize(("datatype", "value"), ROUND_TRIP)
def test_every_datatype_round_trips_exactly(
    store: HistorianStore, datatype: int, value: SampleValue
) -> None:
    tag = f"rt/{datatype}"
    store.write_batch(
        [Sample(tag, T0, value, quality=0 if value is None else 192, datatype=datatype)]
    )
    [back] = store.history(tag, T0, T0 + 1)
    assert back.datatype == datatype
    assert back.quality == (0 if value is None else 192)
    assert type(back.value) is type(value)
    if isinstance(value, float) and math.isnan(value):
        assert isinstance(back.value, float)
        assert math.isnan(back.value)
    elif isinstance(value, float):
        assert isinstance(back.value, float)
        assert math.copysign(1.0, back.value) == math.copysign(1.0, value)
        assert back.value == value
    else:
        assert back.value == value
    latest = store.latest(tag)
    assert latest is not None
    assert (latest.ts_ms, repr(latest.value)) == (back.ts_ms, repr(back.value))


def test_negative_zero_is_stored_as_zero(store: HistorianStore) -> None:
    store.write_batch([Sample("z", T0, -0.0, datatype=10)])
    [back] = store.history("z", T0, T0 + 1)
    assert repr(back.value) == "0.0"


def test_datatype_is_inferred_when_unknown(store: HistorianStore) -> None:
    store.write_batch(
        [Sample("b", T0, True), Sample("f", T0, math.nan), Sample("u", T0, 2**64 - 1)]
    )
    assert store.latest("b") == Sample("b", T0, True, datatype=11)
    latest_f = store.latest("f")
    assert latest_f is not None
    assert isinstance(latest_f.value, float)
    assert math.isnan(latest_f.value)
    assert store.latest("u") == Sample("u", T0, 2**64 - 1, datatype=8)


def test_is_historical_and_quality_round_trip(store: HistorianStore) -> None:
    store.write_batch([Sample("h", T0, 1, quality=500, is_historical=True, datatype=4)])
    assert store.history("h", T0, T0 + 1) == [Sample("h", T0, 1, 500, True, 4)]


@pytest.mark.parametrize(
    ("datatype", "value"),
    [
        (4, 2**63),
        (4, -(2**63) - 1),
        (8, 2**64),
        (8, -1),
        (4, math.nan),
        (11, 2),
        (10, "text in a Double tag"),
        (12, "nul\x00byte"),
        (12, "\ud800"),
        (12, [1, 2]),
    ],
)
def test_unstorable_values_reject_the_whole_batch(
    store: HistorianStore, datatype: int, value: object
) -> None:
    good = Sample("ok", T0, 1.0, datatype=10)
    bad = Sample("bad", T0, value, datatype=datatype)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r".+"):
        store.write_batch([good, bad])
    assert store.count() == 0
    assert store.tags() == []  # nor a tag: "bad" would keep a datatype taken from a refused value
    assert store.write_batch([good]) == 1


def test_history_is_ordered_and_half_open(store: HistorianStore) -> None:
    # Written out of order, in two batches.
    store.write_batch([Sample("r", T0 + ts, ts, datatype=4) for ts in (5, 1, 9, 3)])
    store.write_batch([Sample("r", T0 + ts, ts, datatype=4) for ts in (0, 7, 10)])
    assert [s.value for s in store.history("r", T0, T0 + 100)] == [0, 1, 3, 5, 7, 9, 10]
    # start inclusive, end exclusive
    assert [s.value for s in store.history("r", T0 + 1, T0 + 9)] == [1, 3, 5, 7]
    assert [s.value for s in store.history("r", T0 + 1, T0 + 100, limit=2)] == [1, 3]
    assert store.history("r", T0 + 11, T0 + 100) == []
    assert store.history("unknown", T0, T0 + 100) == []


def test_tags_count_latest(store: HistorianStore) -> None:
    assert store.latest("a") is None
    assert store.count("a") == 0
    store.write_batch(
        [Sample("b/x", T0, "s", datatype=12), Sample("a/y", T0 + 5, 1.5, datatype=10)]
    )
    store.write_batch([Sample("a/y", T0 + 2, 2.5, datatype=10)])
    assert [(t.tag, t.datatype) for t in store.tags()] == [("a/y", 10), ("b/x", 12)]
    assert store.count() == 3
    assert store.count("a/y") == 2
    assert store.latest("a/y") == Sample("a/y", T0 + 5, 1.5, datatype=10)


def test_aggregate_of_mixed_values(store: HistorianStore) -> None:
    store.write_batch(
        [
            Sample("m", T0 + 0, 1, datatype=4),
            Sample("m", T0 + 1, 2.5),
            Sample("m", T0 + 2, None),
            Sample("m", T0 + 10, 7),
        ]
    )
    first, second = store.aggregate("m", T0, T0 + 20, 10)
    assert (first.start_ms, first.count, first.min, first.max, first.last, first.last_ts_ms) == (
        T0,
        3,
        1.0,
        2.5,
        None,
        T0 + 2,
    )
    assert first.avg == pytest.approx(1.75)
    assert (second.start_ms, second.count, second.avg, second.last) == (T0 + 10, 1, 7.0, 7)
    assert store.aggregate("unknown", T0, T0 + 20, 10) == []


def test_aggregate_of_uint64_and_bool(store: HistorianStore) -> None:
    store.write_batch([Sample("u", T0, 2**64 - 1, datatype=8), Sample("u", T0 + 1, 1)])
    [bucket] = store.aggregate("u", T0, T0 + 2, 1000)
    assert bucket.max == float(2**64 - 1)
    assert bucket.min == 1.0
    store.write_batch([Sample("on", T0 + i, i % 4 == 0, datatype=11) for i in range(8)])
    [duty] = store.aggregate("on", T0, T0 + 8, 1000)
    assert (duty.count, duty.avg, duty.last) == (8, 0.25, False)


_example = itertools.count()


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    points=st.dictionaries(
        st.integers(-50_000, 50_000),
        st.one_of(st.integers(-(10**12), 10**12), st.floats(-1e9, 1e9), st.none()),
        max_size=60,
    ),
    bucket_ms=st.integers(1, 20_000),
    window=st.tuples(st.integers(-60_000, 60_000), st.integers(0, 120_000)),
)
def test_aggregate_matches_a_python_computation(
    store: HistorianStore,
    points: dict[int, int | float | None],
    bucket_ms: int,
    window: tuple[int, int],
) -> None:
    tag = f"agg/{next(_example)}"
    samples = [Sample(tag, T0 + ts, value, datatype=10) for ts, value in points.items()]
    store.write_batch(samples)
    start, end = T0 + window[0], T0 + window[0] + window[1]

    expected: dict[int, list[Sample]] = {}
    for sample in sorted(samples, key=lambda s: s.ts_ms):
        if start <= sample.ts_ms < end:
            expected.setdefault(sample.ts_ms - sample.ts_ms % bucket_ms, []).append(sample)
    buckets = store.aggregate(tag, start, end, bucket_ms)

    assert [b.start_ms for b in buckets] == sorted(expected)
    for bucket in buckets:
        members = expected[bucket.start_ms]
        numbers = [float(s.value) for s in members if s.value is not None]
        assert bucket.count == len(members)
        assert bucket.last_ts_ms == members[-1].ts_ms
        assert bucket.last == members[-1].value
        if numbers:
            assert bucket.min == min(numbers)
            assert bucket.max == max(numbers)
            assert bucket.avg == pytest.approx(
                math.fsum(numbers) / len(numbers), rel=1e-9, abs=1e-6
            )
        else:
            assert (bucket.min, bucket.max, bucket.avg) == (None, None, None)


def test_quarantine_keeps_records_in_order(store: HistorianStore) -> None:
    store.quarantine("g/e/d/x", T0, repr(2**70), "UnstorableValueError: out of range")
    store.quarantine("g/e/d/y", T0 + 1, repr("a\x00b"), "NUL")
    records = store.quarantined()
    assert [(r.tag, r.ts_ms, r.raw, r.reason) for r in records] == [
        ("g/e/d/x", T0, repr(2**70), "UnstorableValueError: out of range"),
        ("g/e/d/y", T0 + 1, "'a\\x00b'", "NUL"),
    ]
    assert records[0].id < records[1].id
    assert all(r.created_at_ms > T0 for r in records)


def test_concurrent_creation_of_the_same_new_tags(open_store: OpenStore) -> None:
    first, second = open_store(), open_store()
    start = threading.Barrier(2, timeout=30)
    results: dict[str, int] = {}
    errors: list[BaseException] = []

    def write(name: str, store: HistorianStore, offset: int) -> None:
        batch = [
            Sample(f"race/{n}", T0 + offset + i, float(i), datatype=10)
            for n in range(50)
            for i in range(0, 20, 2)
        ]
        try:
            start.wait()
            results[name] = store.write_batch(batch)
        except BaseException as error:
            errors.append(error)

    threads = [
        threading.Thread(target=write, args=("first", first, 0)),
        threading.Thread(target=write, args=("second", second, 1)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert results == {"first": 500, "second": 500}
    assert len(first.tags()) == 50
    assert second.count() == 1000
    # Both stores resolved the same ids: each sees the other's rows under one tag.
    assert len(first.history("race/7", T0, T0 + 100)) == 20
