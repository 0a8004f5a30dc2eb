"""What the plant overview and the operator screen show of an asset, read through ``MesQueries``
(the same queries the API answers from): its state, its current run and progress against the
order's quantity, and its figures for the current shift.

An asset with a state tag has a state of its own. A line or an area has the states of the assets
below it: its tile lists them and takes the colour of the most severe one. Its figures are the
sum of theirs (``MesQueries.total``); its run progress counts the output of its *last* asset with
a state tag, in plant file order -- the end of the line, where finished pieces leave it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from andon.domain import AssetPath, DomainError, ProductionOrder, TimeAccount
from andon.server.live_events import asset_state_json
from andon.server.mes_queries import MesQueries

__all__ = [
    "MAX_BADGES",
    "SEVERITY",
    "AssetTile",
    "LeafBadge",
    "PageAccounts",
    "RunView",
    "ShiftView",
    "StateView",
    "asset_tile",
    "orders_by_id",
    "run_view",
    "shift_view",
    "state_view",
]

#: State types from the most to the least severe: a group tile takes the first one present.
SEVERITY = (
    "unplanned_downtime",
    "blocked",
    "starved",
    "setup",
    "planned_downtime",
    "not_scheduled",
    "running",
)
#: States listed on one group tile; the rest are counted ("and 12 more").
MAX_BADGES = 24


@dataclass(frozen=True, slots=True)
class StateView:
    code: int
    name: str
    state_type: str
    mode: str
    reason: str | None
    since_ms: int


@dataclass(frozen=True, slots=True)
class RunView:
    id: str
    order_id: str
    item_id: str | None
    asset: str
    #: False: the run is on an ancestor (a line's run applies to its cells).
    own: bool
    start_ms: int
    quantity: int | None
    produced: int | None

    @property
    def progress(self) -> float | None:
        if self.quantity is None or self.produced is None:
            return None
        return self.produced / self.quantity


@dataclass(frozen=True, slots=True)
class ShiftView:
    label: str | None  # the shift's key, None: the local day (no shift now)
    start_ms: int
    end_ms: int
    availability: float | None
    performance: float | None
    quality: float | None
    oee: float | None
    total: int
    good: int
    reject: int


@dataclass(frozen=True, slots=True)
class LeafBadge:
    path: str
    name: str
    state: StateView | None


@dataclass(slots=True)
class AssetTile:
    path: str
    name: str
    kind: str
    bound: bool
    has_children: bool
    state: StateView | None = None
    #: A group's assets with a state tag (the tile shows the first ``MAX_BADGES``).
    leaves: list[LeafBadge] = field(default_factory=list)
    run: RunView | None = None
    shift: ShiftView | None = None

    @property
    def badges(self) -> list[LeafBadge]:
        return self.leaves[:MAX_BADGES]

    @property
    def more_leaves(self) -> int:
        return max(0, len(self.leaves) - MAX_BADGES)

    @property
    def states(self) -> list[StateView]:
        if self.state is not None:
            return [self.state]
        return [leaf.state for leaf in self.leaves if leaf.state is not None]

    @property
    def worst(self) -> str:
        """The state type that colours the tile ("unknown" without any state)."""
        present = {s.state_type for s in self.states}
        return next((t for t in SEVERITY if t in present), "unknown")

    @property
    def running(self) -> int:
        return Counter(s.state_type for s in self.states)["running"]

    @property
    def href(self) -> str:
        return f"/plant/{self.path}" if self.has_children else f"/operator/{self.path}"


class PageAccounts:
    """The accounts one page reads, each (asset, start, end) read once: a page's tiles overlap
    (a line's summary is the sum of its machines' tiles, several cells share their line's run),
    and each account costs a few queries."""

    def __init__(self, mes: MesQueries) -> None:
        self._mes = mes
        self._accounts: dict[tuple[AssetPath, int, int], TimeAccount] = {}

    def account(self, asset: AssetPath, start_ms: int, end_ms: int) -> TimeAccount:
        key = (asset, start_ms, end_ms)
        found = self._accounts.get(key)
        if found is None:
            found = self._accounts[key] = self._mes.account(asset, start_ms, end_ms)
        return found

    def total(self, asset: AssetPath, start_ms: int, end_ms: int) -> TimeAccount:
        """As ``MesQueries.total``: the sum over the asset's leaves, from the cached accounts."""
        leaves = self._mes.leaves(asset)
        return sum((self.account(leaf, start_ms, end_ms) for leaf in leaves), TimeAccount())


def state_view(mes: MesQueries, asset: AssetPath) -> StateView | None:
    found = asset_state_json(mes, asset)
    if found is None:
        return None
    return StateView(
        found["code"], found["name"], found["state_type"], found["mode"], found["reason"],
        found["since_ms"],
    )  # fmt: skip


def orders_by_id(mes: MesQueries) -> dict[str, ProductionOrder]:
    """Every order (one query; the quantities the progress bars compare against)."""
    return {order.id: order for order in mes.service.run_repository.orders()}


def _counted(mes: MesQueries, asset: AssetPath) -> AssetPath | None:
    """The asset whose output is the asset's output: itself, or its last bound asset."""
    leaves = mes.leaves(asset)
    if asset in leaves:
        return asset
    return leaves[-1] if leaves else None


def run_view(
    mes: MesQueries,
    asset: AssetPath,
    now: int,
    orders: dict[str, ProductionOrder],
    accounts: PageAccounts | None = None,
) -> RunView | None:
    accounts = accounts or PageAccounts(mes)
    run = mes.service.run_at(asset, now)
    if run is None:
        return None
    order = orders.get(run.order_id)
    counted = _counted(mes, asset)
    produced = None
    if counted is not None and now > run.start_ms:
        produced = accounts.account(counted, run.start_ms, now).good_count
    return RunView(
        id=run.id,
        order_id=run.order_id,
        item_id=mes.service.item_of_order(run.order_id),
        asset=str(run.asset),
        own=run.asset == asset,
        start_ms=run.start_ms,
        quantity=None if order is None else order.quantity,
        produced=produced,
    )


def shift_view(
    mes: MesQueries, asset: AssetPath, now: int, accounts: PageAccounts | None = None
) -> ShiftView | None:
    """The figures of the shift running now (or of the local day), summed over the asset's
    bound assets; None when it has none."""
    if not mes.leaves(asset):
        return None
    start, end, label = mes.current_period(asset, now)
    account = (accounts or PageAccounts(mes)).total(asset, start, max(now, start + 1))
    return ShiftView(
        label, start, end, account.availability, account.performance, account.quality,
        account.oee, account.total_count, account.good_count, account.reject_count,
    )  # fmt: skip


def asset_tile(
    mes: MesQueries,
    path: AssetPath,
    now: int,
    orders: dict[str, ProductionOrder],
    accounts: PageAccounts | None = None,
) -> AssetTile:
    """One tile; give the page's ``accounts`` so that tiles sharing assets read them once."""
    accounts = accounts or PageAccounts(mes)
    tree = mes.service.plant.tree
    asset = tree.get(path)
    bound = mes.service.is_bound(path)
    tile = AssetTile(
        path=str(path),
        name=asset.name,
        kind=asset.kind.value,
        bound=bound,
        has_children=bool(tree.children(path)),
    )
    if bound:
        tile.state = state_view(mes, path)
    else:
        tile.leaves = [
            LeafBadge(str(leaf), tree.get(leaf).name, state_view(mes, leaf))
            for leaf in mes.leaves(path)
        ]
    try:
        tile.run = run_view(mes, path, now, orders, accounts)
        tile.shift = shift_view(mes, path, now, accounts)
    except DomainError:  # e.g. an asset outside any site has no clock for shifts
        tile.shift = None
    return tile
