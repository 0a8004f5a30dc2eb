"""The simulated plant: determinism, realistic counters and states, report by exception, writes."""

from __future__ import annotations

import itertools
from collections import defaultdict

import pytest

from andon.edge.sources.base import TagChange
from andon.edge.sources.simulator import (
    MODES,
    STATE_NAMES,
    MachineConfig,
    PlantConfig,
    PlantSimulator,
    benchmark_plant,
    demo_plant,
)
from andon.sparkplug.model import MetricValue

START = 1_700_000_000_000
HOUR = 3_600_000
COUNTERS = ("Count/Infeed", "Count/Outfeed", "Count/Waste")
RUNNING, CHANGEOVER, PLANNED_STOP = 1, 5, 6


def one_machine(*, counter_max: int = 2**32 - 1, reset_probability: float = 0.3) -> PlantConfig:
    machine = MachineConfig("Filler1", "Line1", ideal_rate_per_min=600.0, counter_max=counter_max)
    return PlantConfig(
        "Plant1", (machine,), seed=7, time_scale=20.0, counter_reset_probability=reset_probability
    )


def by_tag(changes: list[TagChange]) -> dict[tuple[str, str], list[TagChange]]:
    tags: dict[tuple[str, str], list[TagChange]] = defaultdict(list)
    for change in changes:
        tags[(change.device_id, change.name)].append(change)
    return tags


def initial(sim: PlantSimulator, device: str, name: str) -> object:
    return next(s.initial_value for s in sim.describe()[device] if s.name == name)


def test_same_seed_gives_the_same_plant_and_another_seed_does_not() -> None:
    first = PlantSimulator(demo_plant(seed=3), start_ms=START).poll(START + HOUR)
    again = PlantSimulator(demo_plant(seed=3), start_ms=START).poll(START + HOUR)
    other = PlantSimulator(demo_plant(seed=4), start_ms=START).poll(START + HOUR)
    assert len(first) > 1000
    assert first == again
    assert first != other


def after_start(changes: list[TagChange]) -> list[TagChange]:
    """Leave out the initial values the first poll reports at ``start_ms``."""
    return [c for c in changes if c.ts_ms > START]


def test_the_first_poll_reports_every_initial_value_once_at_start() -> None:
    sim = PlantSimulator(demo_plant(), start_ms=START)
    first = sim.poll(START)
    described = {(d, s.name): s.initial_value for d, specs in sim.describe().items() for s in specs}
    assert {(c.device_id, c.name): c.value for c in first} == described
    assert len(first) == len(described)
    assert all(c.ts_ms == START for c in first)
    assert all(c.ts_ms > START for c in sim.poll(START + 60_000))


def test_one_big_jump_gives_exactly_what_frequent_polls_give() -> None:
    jumped = PlantSimulator(demo_plant(), start_ms=START).poll(START + 2 * HOUR)
    stepped_sim = PlantSimulator(demo_plant(), start_ms=START)
    stepped: list[TagChange] = []
    for t in range(START, START + 2 * HOUR, 733):
        stepped += stepped_sim.poll(t)
    stepped += stepped_sim.poll(START + 2 * HOUR)
    assert jumped == stepped


def test_a_big_jump_yields_every_event_at_its_own_time_in_order() -> None:
    changes = after_start(PlantSimulator(demo_plant(), start_ms=START).poll(START + 4 * HOUR))
    stamps = [c.ts_ms for c in changes]
    assert stamps == sorted(stamps)
    assert stamps[0] > START
    assert stamps[-1] <= START + 4 * HOUR
    for tag, series in by_tag(changes).items():
        times = [c.ts_ms for c in series]
        assert all(a < b for a, b in itertools.pairwise(times)), tag
    # many distinct instants, not one collapsed burst at the poll time
    assert len({c.ts_ms for c in changes if c.name == "State/Code"}) > 100


def test_report_by_exception_never_repeats_a_value() -> None:
    sim = PlantSimulator(demo_plant(), start_ms=START)
    changes = after_start(sim.poll(START + HOUR) + sim.poll(START + HOUR + 90_000))
    for (device, name), series in by_tag(changes).items():
        values = [initial(sim, device, name)] + [c.value for c in series]
        assert all(a != b for a, b in itertools.pairwise(values)), (device, name)


def test_state_codes_are_valid_and_names_match() -> None:
    changes = PlantSimulator(demo_plant(), start_ms=START).poll(START + 3 * HOUR)
    codes = {(c.device_id, c.ts_ms): c.value for c in changes if c.name == "State/Code"}
    names = {(c.device_id, c.ts_ms): c.value for c in changes if c.name == "State/Name"}
    assert codes.keys() == names.keys()
    for key, code in codes.items():
        assert code in STATE_NAMES
        assert names[key] == STATE_NAMES[code]  # type: ignore[index]
    seen = set(codes.values())
    assert {1, 3, 4, 5} <= seen
    assert any(isinstance(code, int) and 10 <= code <= 19 for code in seen)


def test_counters_advance_only_while_running_and_drop_only_on_a_reset() -> None:
    sim = PlantSimulator(one_machine(reset_probability=0.5), start_ms=START)
    changes = after_start(sim.poll(START + 12 * HOUR))
    state = initial(sim, "Filler1", "State/Code")
    counters = {name: initial(sim, "Filler1", name) for name in COUNTERS}
    resets = advances = 0
    for ts, group in _grouped_by_time(changes):
        values = {c.name: c.value for c in group}
        moved = {n: v for n, v in values.items() if n in COUNTERS}
        if moved and all(v == 0 for v in moved.values()) and len(moved) == 3:
            assert values.get("State/Code") == CHANGEOVER, ts  # operator reset at a changeover
            resets += 1
        elif moved:
            assert state == RUNNING, ts  # the state in effect over the interval ending at ts
            for name, value in moved.items():
                assert value > counters[name], (ts, name)  # type: ignore[operator]
            advances += 1
        counters.update(moved)
        state = values.get("State/Code", state)
    assert resets >= 1
    assert advances > 100


def _grouped_by_time(changes: list[TagChange]) -> list[tuple[int, list[TagChange]]]:
    groups: dict[int, list[TagChange]] = defaultdict(list)
    for change in changes:
        groups[change.ts_ms].append(change)
    return sorted(groups.items())


@pytest.mark.parametrize("counter_max", [2**32 - 1, 9_999])
def test_outfeed_plus_waste_equals_infeed_modulo_the_counter_range(counter_max: int) -> None:
    sim = PlantSimulator(one_machine(counter_max=counter_max, reset_probability=0), start_ms=START)
    changes = sim.poll(START + 12 * HOUR)
    values = {name: initial(sim, "Filler1", name) for name in COUNTERS}
    wrapped = False
    for _, group in _grouped_by_time(changes):
        for change in group:
            if change.name in COUNTERS:
                assert isinstance(change.value, int)
                assert 0 <= change.value <= counter_max
                wrapped |= change.value < values[change.name]  # type: ignore[operator]
                values[change.name] = change.value
        infeed, outfeed, waste = (values[name] for name in COUNTERS)
        assert (outfeed + waste - infeed) % (counter_max + 1) == 0  # type: ignore[operator]
    assert wrapped == (counter_max < 2**32 - 1)  # no resets configured: a drop is a wrap
    assert values["Count/Waste"] != initial(sim, "Filler1", "Count/Waste")  # some waste made


def test_speed_is_zero_unless_running() -> None:
    sim = PlantSimulator(demo_plant(), start_ms=START)
    changes = sim.poll(START + 2 * HOUR)
    state: dict[str, object] = {d: initial(sim, d, "State/Code") for d in sim.describe()}
    speed: dict[str, object] = {}
    for _, group in _grouped_by_time(changes):
        for change in group:
            if change.name == "State/Code":
                state[change.device_id] = change.value
            elif change.name == "Process/Speed":
                speed[change.device_id] = change.value
        for device, code in state.items():
            if code != RUNNING and device in speed:
                assert speed[device] == 0.0


def test_writes_are_validated_and_reported_by_the_next_poll() -> None:
    sim = PlantSimulator(one_machine(), start_ms=START)
    sim.poll(START + 60_000)
    assert sim.write("Filler1", "Setpoint/Speed", 450).accepted
    changes = sim.poll(START + 61_000)
    setpoints = [c for c in changes if c.name == "Setpoint/Speed"]
    assert setpoints == [TagChange("Filler1", "Setpoint/Speed", 450.0, START + 60_001)]

    rejected: dict[tuple[str, str, MetricValue], str] = {
        ("Nope", "Mode", "Idle"): "unknown device",
        ("Filler1", "Nope", 1): "no metric",
        ("Filler1", "Count/Infeed", 0): "read-only",
        ("Filler1", "Setpoint/Speed", 601): "(0, 600]",
        ("Filler1", "Setpoint/Speed", 0): "(0, 600]",
        ("Filler1", "Setpoint/Speed", True): "number",
        ("Filler1", "Setpoint/Speed", "fast"): "number",
        ("Filler1", "Mode", "Party"): "Mode must be one of",
    }
    for (device, name, value), reason in rejected.items():
        result = sim.write(device, name, value)
        assert not result.accepted, (device, name, value)
        assert reason in result.reason, (device, name, value)


def test_maintenance_mode_holds_the_machine_until_production_resumes() -> None:
    sim = PlantSimulator(one_machine(), start_ms=START)
    sim.poll(START + 10_000)
    assert sim.write("Filler1", "Mode", "Maintenance").accepted
    held = sim.poll(START + 3 * HOUR)
    codes = [c.value for c in held if c.name == "State/Code"]
    assert codes == [PLANNED_STOP]
    assert not [c for c in held if c.name in COUNTERS]
    assert sim.write("Filler1", "Mode", "Production").accepted
    resumed = sim.poll(START + 3 * HOUR + 1_000)
    assert TagChange("Filler1", "State/Code", RUNNING, START + 3 * HOUR + 1) in resumed
    assert TagChange("Filler1", "Mode", "Production", START + 3 * HOUR + 1) in resumed
    assert set(MODES) == {"Production", "Idle", "Maintenance"}


def test_record_to_sees_exactly_what_poll_returns_and_time_never_runs_backwards() -> None:
    recorded: list[TagChange] = []
    sim = PlantSimulator(demo_plant(), start_ms=START, record_to=recorded.append)
    returned = sim.poll(START + 600_000) + sim.poll(START + 1_200_000)
    assert recorded == returned
    assert returned
    assert sim.poll(START + 5_000) == []  # a clock step back yields nothing
    assert sim.now_ms == START + 1_200_000


def test_demo_plant_layout_and_ids() -> None:
    config = demo_plant()
    assert {m.line for m in config.machines} == {"Line1", "Line2"}
    assert len(config.machines) == 6
    described = PlantSimulator(config, start_ms=START).describe()
    assert set(described) == {m.machine_id for m in config.machines}
    for device, specs in described.items():
        assert not set(device) & set(" +/#")
        names = [s.name for s in specs]
        assert {"State/Code", "State/Name", "Mode", "Setpoint/Speed", *COUNTERS} <= set(names)
        assert [s.name for s in specs if s.writable] == ["Mode", "Setpoint/Speed"]


def test_benchmark_plant_has_the_requested_width() -> None:
    sim = PlantSimulator(benchmark_plant(20, tags_per_machine=25), start_ms=START)
    assert all(len(specs) == 25 for specs in sim.describe().values())
    assert len(sim.describe()) == 20
    assert len(sim.poll(START + 10_000)) > 20 * 10


@pytest.mark.parametrize("bad", ["Filler 1", "Filler+1", "Line/1", "#1", ""])
def test_ids_that_break_sparkplug_topics_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="must be non-empty"):
        MachineConfig(bad, "Line1")
    with pytest.raises(ValueError, match="must be non-empty"):
        MachineConfig("Filler1", bad)


def test_duplicate_machine_ids_are_refused() -> None:
    machine = MachineConfig("Filler1", "Line1")
    with pytest.raises(ValueError, match="unique"):
        PlantConfig("Plant1", (machine, machine))
