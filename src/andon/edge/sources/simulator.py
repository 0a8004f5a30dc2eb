"""A deterministic simulated plant: machines with PLC state codes, counters and process values.

Each machine is an event-driven model advanced only by the ``now_ms`` passed to ``poll``:

* State changes happen at their own millisecond; counters and analog values are sampled on a
  fixed grid (``sample_period_ms``, anchored at ``start_ms``) like a PLC read at a fixed rate.
  Because every random draw happens at a grid tick or a state change, never at a poll, polling
  once after an hour gives exactly the same changes as polling every second for that hour.
* Counters advance only while running, at ``Setpoint/Speed`` times a per-run performance factor;
  waste is a small fraction of infeed and ``Outfeed + Waste == Infeed`` (modulo wrap) at every
  sample, which is what the MES relies on ("any two counts give the third"). Counters wrap past
  ``counter_max`` and are reset to 0 by the operator at some changeovers.
* Report by exception: a value is returned only when it differs from the last one returned;
  analog values are rounded to ``analog_resolution`` so noise below it is not a change.
* ``time_scale`` compresses state durations only (so a demo shows a state change every few
  seconds); production rates stay real so performance and OEE figures remain meaningful.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter

from andon.edge.sources.base import TagChange, TagSpec, WriteResult
from andon.sparkplug.model import DataType, MetricValue

__all__ = [
    "BASE_TAG_COUNT",
    "MODES",
    "STATE_NAMES",
    "UINT32_MAX",
    "MachineConfig",
    "PlantConfig",
    "PlantSimulator",
    "benchmark_plant",
    "demo_plant",
]

UINT32_MAX = 2**32 - 1

RUNNING, IDLE, BLOCKED, STARVED, CHANGEOVER, PLANNED_STOP = 1, 2, 3, 4, 5, 6
STATE_NAMES: Mapping[int, str] = {
    RUNNING: "Running",
    IDLE: "Idle",
    BLOCKED: "Blocked",
    STARVED: "Starved",
    CHANGEOVER: "Changeover",
    PLANNED_STOP: "Planned stop",
    10: "Jam",
    11: "Motor overload",
    12: "Sensor fault",
    13: "Emergency stop",
    14: "Material shortage",
    15: "Guard door open",
    16: "Low air pressure",
    17: "Drive fault",
    18: "Overtemperature",
    19: "Reject limit exceeded",
}
FAULT_CODES = tuple(range(10, 20))
LOW_AIR_PRESSURE, OVERTEMPERATURE = 16, 18

#: Operating modes an operator (or the MES) can command; non-production modes hold the machine.
MODES = ("Production", "Idle", "Maintenance")
_MODE_HOLD_STATE = {"Idle": IDLE, "Maintenance": PLANNED_STOP}

# What follows a run, with relative weights: mostly short blocked/starved stops, some faults.
_STOPS_AFTER_RUN = (BLOCKED, STARVED, -1, IDLE, PLANNED_STOP, CHANGEOVER)  # -1: a fault code
_STOP_WEIGHTS = (30, 25, 20, 8, 7, 10)

_FOREVER = math.inf

# Tag layout of every machine; the index constants keep the per-tick loop free of dict lookups.
_INFEED, _OUTFEED, _WASTE, _CODE, _NAME, _MODE, _SETPOINT, _SPEED, _TEMP, _PRESSURE = range(10)
BASE_TAG_COUNT = 10
_ID_FORBIDDEN = frozenset(" +/#")


def _check_id(kind: str, value: str) -> None:
    # Ids end up in Sparkplug topics, where these characters are separators or wildcards.
    if not value or any(ch in _ID_FORBIDDEN for ch in value):
        raise ValueError(f"{kind} {value!r} must be non-empty without spaces, '+', '/' or '#'")


@dataclass(frozen=True, slots=True)
class MachineConfig:
    """One simulated machine; ``machine_id`` is its Sparkplug device id."""

    machine_id: str
    line: str
    area: str = "Production"
    ideal_rate_per_min: float = 100.0
    waste_fraction: float = 0.02
    counter_max: int = UINT32_MAX
    extra_analog_tags: int = 0  # Process/AnalogNN, to give benchmarks wide devices

    def __post_init__(self) -> None:
        for kind, value in (("machine id", self.machine_id), ("line", self.line)):
            _check_id(kind, value)
        _check_id("area", self.area)
        if not self.ideal_rate_per_min > 0:
            raise ValueError(f"{self.machine_id}: ideal_rate_per_min must be positive")
        if not 0.0 <= self.waste_fraction < 0.5:
            raise ValueError(f"{self.machine_id}: waste_fraction must be in [0, 0.5)")
        if not 0 < self.counter_max <= UINT32_MAX:
            raise ValueError(f"{self.machine_id}: counter_max must be in 1..2**32-1 (UInt32)")
        if self.extra_analog_tags < 0:
            raise ValueError(f"{self.machine_id}: extra_analog_tags must be >= 0")


@dataclass(frozen=True, slots=True)
class PlantConfig:
    site: str
    machines: tuple[MachineConfig, ...]
    seed: int = 0
    time_scale: float = 1.0
    sample_period_ms: int = 1000
    analog_resolution: float = 0.1
    counter_reset_probability: float = 0.3  # chance an operator zeroes counters at a changeover

    def __post_init__(self) -> None:
        _check_id("site", self.site)
        ids = [m.machine_id for m in self.machines]
        if len(set(ids)) != len(ids):
            raise ValueError("machine ids must be unique within a plant")
        if not self.time_scale > 0 or self.sample_period_ms <= 0 or not self.analog_resolution > 0:
            raise ValueError("time_scale, sample_period_ms and analog_resolution must be > 0")


def demo_plant(seed: int = 1, time_scale: float = 60.0) -> PlantConfig:
    """One site, two lines, six machines; at the default scale states change every few seconds."""
    line1 = (("Filler1", 120.0), ("Capper1", 130.0), ("Labeler1", 140.0))
    line2 = (("Mixer2", 20.0), ("Filler2", 100.0), ("Packer2", 25.0))
    machines = tuple(
        MachineConfig(machine_id, line, area, rate)
        for line, area, members in (("Line1", "Bottling", line1), ("Line2", "Processing", line2))
        for machine_id, rate in members
    )
    return PlantConfig(site="Plant1", machines=machines, seed=seed, time_scale=time_scale)


def benchmark_plant(machine_count: int, tags_per_machine: int = 25, seed: int = 0) -> PlantConfig:
    """``machine_count`` machines of ``tags_per_machine`` metrics each, states at demo speed."""
    extra = max(0, tags_per_machine - BASE_TAG_COUNT)
    machines = tuple(
        MachineConfig(f"M{i:04d}", f"Line{i // 10:03d}", extra_analog_tags=extra)
        for i in range(machine_count)
    )
    return PlantConfig(site="Bench", machines=machines, seed=seed, time_scale=60.0)


def _decimals(resolution: float) -> int:
    return max(0, math.ceil(-math.log10(resolution)) + 1)


class _Machine:
    """State and value model of one machine; only PlantSimulator touches it."""

    def __init__(self, cfg: MachineConfig, plant: PlantConfig, start_ms: int) -> None:
        self.cfg = cfg
        self.device_id = cfg.machine_id
        # A string seed hashes the same on every run (not affected by PYTHONHASHSEED), and a
        # per-machine stream keeps one machine's history independent of the others.
        self.rng = random.Random(f"{plant.seed}:{cfg.machine_id}")
        self.period_ms = plant.sample_period_ms
        self.scale = plant.time_scale
        self.resolution = plant.analog_resolution
        self.decimals = _decimals(plant.analog_resolution)
        self.reset_probability = plant.counter_reset_probability
        self.modulus = cfg.counter_max + 1
        rng = self.rng
        self.infeed = rng.randrange(0, min(cfg.counter_max, 1_000_000))
        self.waste = round(self.infeed * cfg.waste_fraction)
        self.outfeed = self.infeed - self.waste
        self.extra_base = [rng.uniform(10.0, 90.0) for _ in range(cfg.extra_analog_tags)]
        self.extras = list(self.extra_base)  # unrounded random walks behind Process/AnalogNN
        self.temperature = 60.0
        self.pressure = 6.0
        self.perf = 0.9
        self.waste_rate = cfg.waste_fraction
        self.speed = 0.0  # actual units/min, unrounded; counts integrate this
        self.unit_acc = 0.0
        self.waste_acc = 0.0
        self.mode = "Production"
        self.setpoint = float(cfg.ideal_rate_per_min)
        self.values: list[MetricValue] = [
            self.infeed, self.outfeed, self.waste, IDLE, STATE_NAMES[IDLE], self.mode,
            self.setpoint, 0.0, self._round(self.temperature), self._round(self.pressure),
            *(self._round(x) for x in self.extras),
        ]  # fmt: skip
        self.t_ms = start_ms  # counters are integrated up to here
        self.next_tick_ms = start_ms + self.period_ms
        self.commands: list[tuple[str, MetricValue]] = []
        self.command_ms: float = _FOREVER
        self.state = IDLE
        self.state_until: float = _FOREVER
        self._enter(RUNNING, start_ms)  # a machine starts its life in the middle of a run
        self.specs = self._specs()
        self.names = tuple(spec.name for spec in self.specs)
        self.reported = list(self.values)

    def _specs(self) -> tuple[TagSpec, ...]:
        v, d, c = self.values, DataType, self.cfg
        counter = "Counter (UInt32) that wraps past counter_max and may be reset to 0"
        specs = [
            TagSpec("Count/Infeed", d.UINT32, v[_INFEED], "units", description=counter),
            TagSpec("Count/Outfeed", d.UINT32, v[_OUTFEED], "units", description=counter),
            TagSpec("Count/Waste", d.UINT32, v[_WASTE], "units", description=counter),
            TagSpec("State/Code", d.INT32, v[_CODE], description="PLC state code"),
            TagSpec("State/Name", d.STRING, v[_NAME]),
            TagSpec("Mode", d.STRING, v[_MODE], writable=True, description="|".join(MODES)),
            TagSpec("Setpoint/Speed", d.DOUBLE, v[_SETPOINT], "units/min", writable=True,
                    description=f"0 < value <= {c.ideal_rate_per_min:g} (ideal rate)"),
            TagSpec("Process/Speed", d.DOUBLE, v[_SPEED], "units/min"),
            TagSpec("Process/Temperature", d.DOUBLE, v[_TEMP], "degC"),
            TagSpec("Process/Pressure", d.DOUBLE, v[_PRESSURE], "bar"),
        ]  # fmt: skip
        specs += [
            TagSpec(f"Process/Analog{i + 1:02d}", d.DOUBLE, v[BASE_TAG_COUNT + i])
            for i in range(c.extra_analog_tags)
        ]
        return tuple(specs)

    def _round(self, x: float) -> float:
        return round(round(x / self.resolution) * self.resolution, self.decimals)

    def _duration_ms(self, seconds: float) -> int:
        return max(1, round(seconds * 1000.0 / self.scale))

    def _enter(self, state: int, t_ms: int) -> None:
        """Switch to ``state`` at ``t_ms`` and draw how long it lasts (seconds before scaling)."""
        rng, values = self.rng, self.values
        hold = _MODE_HOLD_STATE.get(self.mode)
        if hold is not None:
            state, seconds = hold, _FOREVER  # held until the mode is changed back
        elif state == RUNNING:
            seconds = rng.expovariate(1 / 300.0)
            self.perf = rng.uniform(0.82, 0.98)  # speed losses of this run
            self.waste_rate = min(0.9, self.cfg.waste_fraction * rng.uniform(0.3, 2.0))
        elif state in (BLOCKED, STARVED):
            seconds = rng.uniform(5.0, 90.0)
        elif state == IDLE:
            seconds = rng.uniform(60.0, 300.0)
        elif state == CHANGEOVER:
            seconds = rng.uniform(900.0, 2700.0)
            if rng.random() < self.reset_probability:
                self.infeed = self.outfeed = self.waste = 0
                values[_INFEED] = values[_OUTFEED] = values[_WASTE] = 0
        elif state == PLANNED_STOP:
            seconds = rng.uniform(600.0, 1800.0)
        else:  # a fault: mostly a few minutes, occasionally a long one
            seconds = min(1800.0, 30.0 + rng.expovariate(1 / 180.0))
        self.state = state
        self.state_until = _FOREVER if seconds == _FOREVER else t_ms + self._duration_ms(seconds)
        self.speed = self.setpoint * self.perf if state == RUNNING else 0.0
        values[_CODE] = state
        values[_NAME] = STATE_NAMES[state]
        values[_SPEED] = self._round(self.speed)

    def _next_state(self) -> int:
        if self.state != RUNNING:
            return RUNNING
        stop = self.rng.choices(_STOPS_AFTER_RUN, _STOP_WEIGHTS)[0]
        return self.rng.choice(FAULT_CODES) if stop < 0 else stop

    def _integrate(self, t_ms: int) -> None:
        """Count production from ``self.t_ms`` to ``t_ms`` at the speed in effect over it."""
        if self.state == RUNNING and self.speed > 0.0:
            self.unit_acc += self.speed * (t_ms - self.t_ms) / 60_000.0
            units = int(self.unit_acc)
            if units:
                self.unit_acc -= units
                self.waste_acc += units * self.waste_rate
                waste = int(self.waste_acc)  # <= units, since waste_acc < 1 before and rate <= 1
                self.waste_acc -= waste
                values, modulus = self.values, self.modulus
                values[_INFEED] = self.infeed = (self.infeed + units) % modulus
                values[_OUTFEED] = self.outfeed = (self.outfeed + units - waste) % modulus
                values[_WASTE] = self.waste = (self.waste + waste) % modulus
        self.t_ms = t_ms

    def _sample(self) -> None:
        """One grid tick of the analog process values (first-order lags plus noise)."""
        rng, values, r = self.rng, self.values, self._round
        running = self.state == RUNNING
        if running:
            self.speed = max(0.0, self.setpoint * self.perf * (1.0 + rng.gauss(0.0, 0.01)))
            values[_SPEED] = r(self.speed)
        lag = min(1.0, self.period_ms / 120_000.0)  # ~2 min thermal time constant
        target = 95.0 if self.state == OVERTEMPERATURE else (65.0 if running else 40.0)
        self.temperature += (target - self.temperature) * lag + rng.gauss(0.0, 0.05)
        values[_TEMP] = r(self.temperature)
        target = 3.5 if self.state == LOW_AIR_PRESSURE else (5.8 if running else 6.2)
        self.pressure += (target - self.pressure) * min(1.0, lag * 10) + rng.gauss(0.0, 0.02)
        values[_PRESSURE] = r(self.pressure)
        extras, gauss = self.extras, rng.gauss
        for i, base in enumerate(self.extra_base):
            x = extras[i]
            extras[i] = x = x + (base - x) * 0.01 + gauss(0.0, 0.1)  # mean-reverting walk
            values[BASE_TAG_COUNT + i] = r(x)

    def _apply_commands(self, t_ms: int) -> None:
        for name, value in self.commands:
            if name == "Setpoint/Speed":
                assert isinstance(value, float)
                self.setpoint = self.values[_SETPOINT] = value
                if self.state == RUNNING:
                    self.speed = value * self.perf
                    self.values[_SPEED] = self._round(self.speed)
            elif name == "Mode" and value != self.mode:
                assert isinstance(value, str)
                self.mode = self.values[_MODE] = value
                self._enter(RUNNING, t_ms)  # _enter holds the machine if the mode says so
        self.commands.clear()
        self.command_ms = _FOREVER

    def advance(self, until_ms: int, out: list[TagChange]) -> None:
        """Run every event up to and including ``until_ms``, appending changes to ``out``."""
        values, reported, names, device = self.values, self.reported, self.names, self.device_id
        count = len(names)
        while True:
            t = min(self.next_tick_ms, self.state_until, self.command_ms)
            if t > until_ms:
                return
            t_ms = int(t)
            self._integrate(t_ms)
            if t_ms == self.state_until:
                self._enter(self._next_state(), t_ms)
            if t_ms == self.command_ms:
                self._apply_commands(t_ms)
            if t_ms == self.next_tick_ms:
                self._sample()
                self.next_tick_ms += self.period_ms
            for i in range(count):
                value = values[i]
                if value != reported[i]:
                    reported[i] = value
                    out.append(TagChange(device, names[i], value, t_ms))


class PlantSimulator:
    """The simulated plant as an edge ``Source``; one device per machine."""

    def __init__(
        self,
        config: PlantConfig,
        *,
        start_ms: int,
        record_to: Callable[[TagChange], None] | None = None,
    ) -> None:
        self.config = config
        self._machines = {m.machine_id: _Machine(m, config, start_ms) for m in config.machines}
        self._now_ms = start_ms
        self._start_ms = start_ms
        self._initial_pending = True
        self._record_to = record_to

    @property
    def now_ms(self) -> int:
        """The simulated time reached by the last poll (``start_ms`` before the first)."""
        return self._now_ms

    def describe(self) -> Mapping[str, Sequence[TagSpec]]:
        return {device_id: m.specs for device_id, m in self._machines.items()}

    def poll(self, now_ms: int) -> list[TagChange]:
        """Every change after the previous poll up to ``now_ms``, sorted by timestamp.

        The first poll also reports every tag's initial value at ``start_ms``.

        ``record_to`` (if set) sees exactly what this returns. A clock that steps backwards
        yields nothing until it passes the time already simulated.
        """
        out: list[TagChange] = []
        if self._initial_pending:
            # The first poll reports every tag's starting value: it is data the historian
            # must hold too, and a birth must never carry a value nobody recorded.
            self._initial_pending = False
            out.extend(
                TagChange(device_id, spec.name, spec.initial_value, self._start_ms)
                for device_id, specs in self.describe().items()
                for spec in specs
            )
        if now_ms <= self._now_ms:
            if self._record_to is not None:
                for change in out:
                    self._record_to(change)
            return out
        for machine in self._machines.values():
            machine.advance(now_ms, out)
        self._now_ms = now_ms
        if len(self._machines) > 1:
            out.sort(key=_BY_TS)  # stable: a device's own order at equal timestamps is kept
        if self._record_to is not None:
            for change in out:
                self._record_to(change)
        return out

    def write(self, device_id: str, name: str, value: MetricValue) -> WriteResult:
        """Accept ``Mode`` and ``Setpoint/Speed``; the change is reported by the next poll.

        A write takes effect 1 ms after the time already simulated, so the change it causes
        never shares a timestamp with a value an earlier poll returned for the same metric.
        """
        machine = self._machines.get(device_id)
        if machine is None:
            return WriteResult.rejected(f"unknown device {device_id!r}")
        spec = next((s for s in machine.specs if s.name == name), None)
        if spec is None:
            return WriteResult.rejected(f"device {device_id!r} has no metric {name!r}")
        if not spec.writable:
            return WriteResult.rejected(f"{device_id}/{name} is read-only")
        if name == "Mode":
            if value not in MODES or not isinstance(value, str):
                return WriteResult.rejected(
                    f"Mode must be one of {', '.join(MODES)}; got {value!r}"
                )
        else:  # Setpoint/Speed
            ideal = machine.cfg.ideal_rate_per_min
            number_ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not number_ok or not 0.0 < float(value) <= ideal:  # type: ignore[arg-type]
                return WriteResult.rejected(
                    f"Setpoint/Speed must be a number in (0, {ideal:g}] units/min; got {value!r}"
                )
            value = float(value)  # type: ignore[arg-type]
        machine.commands.append((name, value))
        machine.command_ms = self._now_ms + 1
        return WriteResult.ok()


_BY_TS = attrgetter("ts_ms")
