"""State types (ISO 22400-2 time model), modes, PLC state maps and the downtime reason tree.

How time is accounted (ISO 22400-2:2014 §5.3 time model; oee.com "OEE Factors"):

* ``RUNNING`` — actual production time (APT, "run time").
* ``SETUP`` — changeover, setup and adjustment inside planned production time: an availability
  loss (ISO 22400 actual unit setup time, AUST, is part of busy time; oee.com counts changeovers as
  "Planned Stops" within availability loss). Chosen so that a faster changeover raises OEE.
* ``UNPLANNED_DOWNTIME`` — breakdowns and faults (ISO 22400 actual unit down time, ADOT): an
  availability loss, and each interval counts as a failure for MTBF/MTTR.
* ``BLOCKED`` / ``STARVED`` — the machine is able to run but the line around it is not. Common MES
  practice (Sepasoft OEE state types, Vorne XL, oee.com listing "material shortages" as an
  unplanned stop; ISO 22400 actual unit delay time, ADET, reduces APT) counts them as unplanned
  downtime, i.e. an availability loss. They keep their own type so that Pareto and loss reports can
  separate external causes, and they are not failures for MTBF/MTTR.
* ``PLANNED_DOWNTIME`` — breaks, meetings, planned maintenance (ISO 22400 planned down time, PDOT):
  excluded from planned production time.
* ``NOT_SCHEDULED`` — idle / no demand, outside any shift: excluded from planned production time;
  it lowers TEEP (loading) but never OEE.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from andon.domain.errors import DomainError

__all__ = [
    "CHANGEOVER",
    "IDLE",
    "MAINTENANCE",
    "PRODUCTION",
    "UNKNOWN_STATE_NAME",
    "Mode",
    "Reason",
    "ReasonTree",
    "StateDefinition",
    "StateMap",
    "StateType",
    "accounted_type",
]

UNKNOWN_STATE_NAME = "Unknown"


class StateType(enum.Enum):
    RUNNING = "running"
    SETUP = "setup"
    UNPLANNED_DOWNTIME = "unplanned_downtime"
    BLOCKED = "blocked"
    STARVED = "starved"
    PLANNED_DOWNTIME = "planned_downtime"
    NOT_SCHEDULED = "not_scheduled"

    @property
    def in_planned_production_time(self) -> bool:
        return self not in (StateType.PLANNED_DOWNTIME, StateType.NOT_SCHEDULED)

    @property
    def is_availability_loss(self) -> bool:
        return self.in_planned_production_time and self is not StateType.RUNNING

    @property
    def is_failure(self) -> bool:
        """Counted by MTBF/MTTR: only the machine's own breakdowns, not external or setup stops."""
        return self is StateType.UNPLANNED_DOWNTIME


@dataclass(frozen=True, slots=True)
class Mode:
    """What the asset should be doing. ``accounts_as`` overrides the state type of every
    non-running state while the mode holds (``None``: the state type decides); ``startup`` marks
    modes whose rejects are start-up rejects in the six big losses."""

    name: str
    accounts_as: StateType | None = None
    startup: bool = False

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise DomainError("a mode needs a name")
        if self.accounts_as is StateType.RUNNING:
            raise DomainError(f"mode {self.name!r}: a mode cannot turn a stop into running time")


PRODUCTION = Mode("Production")
# A changeover is setup time whatever the PLC says (a stopped filler during a changeover is not a
# breakdown); its rejects are start-up rejects.
CHANGEOVER = Mode("Changeover", StateType.SETUP, startup=True)
MAINTENANCE = Mode("Maintenance", StateType.PLANNED_DOWNTIME)
IDLE = Mode("Idle", StateType.NOT_SCHEDULED)


def accounted_type(
    state_type: StateType, mode: Mode, *, scheduled: bool = True, in_break: bool = False
) -> StateType:
    """The type a stretch of time is accounted as, after the calendar and the mode.

    Precedence for stops: outside every shift → NOT_SCHEDULED; inside a calendar break →
    PLANNED_DOWNTIME; then the mode's override; then the state's own type. RUNNING is never
    overridden: a machine that produces through a break or outside its shifts made real parts, and
    counting that time as run time keeps performance (ideal time / run time) consistent with the
    counts it produced (Vorne XL "run through breaks" behaves the same way).
    """
    if state_type is StateType.RUNNING:
        return state_type
    if not scheduled:
        return StateType.NOT_SCHEDULED
    if in_break:
        return StateType.PLANNED_DOWNTIME
    return mode.accounts_as or state_type


@dataclass(frozen=True, slots=True)
class StateDefinition:
    code: int
    name: str
    type: StateType
    default_reason: str | None = None


class StateMap:
    """PLC state code → definition, per asset. An unmapped code never crashes the pipeline: it
    is an explicit "Unknown (code)" unplanned stop, shown in downtime until someone maps it."""

    def __init__(
        self, definitions: Iterable[StateDefinition], unknown_reason: str | None = None
    ) -> None:
        self._by_code: dict[int, StateDefinition] = {}
        for definition in definitions:
            if definition.code in self._by_code:
                raise DomainError(f"state code {definition.code} is mapped twice")
            self._by_code[definition.code] = definition
        self._unknown_reason = unknown_reason

    def resolve(self, code: int) -> StateDefinition:
        found = self._by_code.get(code)
        if found is not None:
            return found
        return StateDefinition(
            code,
            f"{UNKNOWN_STATE_NAME} ({code})",
            StateType.UNPLANNED_DOWNTIME,
            self._unknown_reason,
        )

    def is_known(self, code: int) -> bool:
        return code in self._by_code

    @property
    def definitions(self) -> Mapping[int, StateDefinition]:
        return dict(self._by_code)


@dataclass(frozen=True, slots=True)
class Reason:
    id: str
    name: str
    parent_id: str | None = None


class ReasonTree:
    """Downtime reasons as a tree, independent of the state type (a "Jam" may be reported under a
    fault state or a blocked state). Top-level nodes are categories."""

    def __init__(self, reasons: Iterable[Reason]) -> None:
        self._by_id: dict[str, Reason] = {}
        for reason in reasons:
            if not reason.id:
                raise DomainError("a reason needs a non-empty id")
            if reason.id in self._by_id:
                raise DomainError(f"reason id {reason.id!r} is used twice")
            self._by_id[reason.id] = reason
        self._children: dict[str, list[str]] = {rid: [] for rid in self._by_id}
        for reason in self._by_id.values():
            if reason.parent_id is None:
                continue
            if reason.parent_id not in self._by_id:
                raise DomainError(f"reason {reason.id!r}: unknown parent {reason.parent_id!r}")
            self._children[reason.parent_id].append(reason.id)
        for reason in self._by_id.values():
            self._ancestor_ids(reason.id)  # raises on a cycle

    def _ancestor_ids(self, reason_id: str) -> list[str]:
        chain: list[str] = []
        current = self.get(reason_id).parent_id
        while current is not None:
            if current == reason_id or current in chain:
                raise DomainError(f"reason {reason_id!r} is part of a parent cycle")
            chain.append(current)
            current = self._by_id[current].parent_id
        return chain

    def __contains__(self, reason_id: object) -> bool:
        return reason_id in self._by_id

    def get(self, reason_id: str) -> Reason:
        try:
            return self._by_id[reason_id]
        except KeyError:
            raise DomainError(f"unknown reason {reason_id!r}") from None

    def path(self, reason_id: str) -> tuple[str, ...]:
        """Names from the category down to the reason, e.g. ("Mechanical", "Conveyor", "Jam")."""
        ids = [*reversed(self._ancestor_ids(reason_id)), reason_id]
        return tuple(self._by_id[i].name for i in ids)

    def category_of(self, reason_id: str) -> Reason:
        ancestors = self._ancestor_ids(reason_id)
        return self._by_id[ancestors[-1]] if ancestors else self.get(reason_id)

    def children(self, reason_id: str) -> tuple[Reason, ...]:
        self.get(reason_id)
        return tuple(self._by_id[c] for c in self._children[reason_id])

    def is_leaf(self, reason_id: str) -> bool:
        self.get(reason_id)
        return not self._children[reason_id]

    def leaves(self) -> tuple[Reason, ...]:
        return tuple(r for r in self._by_id.values() if not self._children[r.id])

    def categories(self) -> tuple[Reason, ...]:
        return tuple(r for r in self._by_id.values() if r.parent_id is None)
