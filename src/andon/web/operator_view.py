"""What the operator screen lists: the stops of the shift (unexplained first in mind), the steps
of the reason tree, the orders a run can start for and the modes, read from the MES.

A stop is *unexplained* when nobody and nothing has said why it happened: it has no reason, only
a category (not a leaf of the tree), or the reason the plant file gives an unmapped PLC code.
"""

from __future__ import annotations

from dataclasses import dataclass

from andon.domain import AssetPath, OrderState, ProductionOrder, Reason, StateType
from andon.server.mes_queries import MesQueries

__all__ = [
    "MAX_STOPS",
    "ReasonStep",
    "StopRow",
    "order_choices",
    "reason_step",
    "stop_rows",
]

#: Stops listed at once (newest first); a shift rarely has more, and the list stays usable.
MAX_STOPS = 60
_OPEN_ORDERS = (OrderState.PLANNED, OrderState.RELEASED, OrderState.RUNNING)


@dataclass(frozen=True, slots=True)
class StopRow:
    start_ms: int
    end_ms: int | None
    name: str
    state_type: str
    reason_id: str | None
    reason: str | None  # "Mechanical / Jam"
    unexplained: bool

    @property
    def is_open(self) -> bool:
        return self.end_ms is None


def stop_rows(mes: MesQueries, asset: AssetPath, start_ms: int, end_ms: int) -> list[StopRow]:
    """The stops (every interval that is not running time) overlapping [start_ms, end_ms),
    newest first."""
    service = mes.service
    reasons = service.plant.reasons
    state_map = service.plant.state_maps[asset]
    rows = []
    for interval in mes.intervals(asset, start_ms, end_ms):
        if interval.state_type is StateType.RUNNING:
            continue
        rid = interval.reason_id
        definition = state_map.resolve(interval.code)
        reason: str | None = None
        unexplained = True
        if rid is not None and rid in reasons:
            reason = " / ".join(reasons.path(rid))
            unexplained = not reasons.is_leaf(rid) or (
                not state_map.is_known(interval.code) and rid == definition.default_reason
            )
        rows.append(
            StopRow(
                start_ms=interval.start_ms,
                end_ms=interval.end_ms,
                name=definition.name,
                state_type=interval.state_type.value,
                reason_id=rid,
                reason=reason,
                unexplained=unexplained,
            )
        )
    rows.sort(key=lambda row: row.start_ms, reverse=True)
    return rows[:MAX_STOPS]


@dataclass(frozen=True, slots=True)
class ReasonStep:
    """One level of the reason picker: where it is in the tree and what can be chosen there."""

    parent: Reason | None
    trail: list[Reason]  # from the category down to ``parent``
    choices: list[tuple[Reason, bool]]  # (reason, has children)


def reason_step(mes: MesQueries, parent_id: str | None) -> ReasonStep:
    """The categories (``parent_id`` None) or the children of a reason; KeyError-free: an
    unknown id raises the domain's clear error."""
    reasons = mes.service.plant.reasons
    if parent_id is None:
        children = list(reasons.categories())
        return ReasonStep(None, [], [(r, not reasons.is_leaf(r.id)) for r in children])
    parent = reasons.get(parent_id)
    trail = [reasons.get(rid) for rid in _ids_down_to(mes, parent_id)]
    children = list(reasons.children(parent_id))
    return ReasonStep(parent, trail, [(r, not reasons.is_leaf(r.id)) for r in children])


def _ids_down_to(mes: MesQueries, reason_id: str) -> list[str]:
    reasons = mes.service.plant.reasons
    chain = [reason_id]
    current = reasons.get(reason_id).parent_id
    while current is not None:
        chain.append(current)
        current = reasons.get(current).parent_id
    return list(reversed(chain))


def order_choices(orders: dict[str, ProductionOrder]) -> list[ProductionOrder]:
    """Orders a run may start for (not completed or cancelled), running ones first."""
    open_orders = [o for o in orders.values() if o.state in _OPEN_ORDERS]
    return sorted(open_orders, key=lambda o: (o.state is not OrderState.RUNNING, o.id))
