"""The pure parts of a cluster node: routing to domains, splitting derived writes, the gate
generations, the rebirth plan and limit, the status and refusal texts, a write's target."""

from __future__ import annotations

from pathlib import Path

import pytest

from andon.api.write_guard import target_of
from andon.cluster.model import Lease, Member
from andon.cluster.plan import DomainPlan
from andon.server.cluster_historian import DerivedGate, GatedWrite, split_changes
from andon.server.cluster_routing import DomainRouter
from andon.server.cluster_status import ClusterView, leader_watermark, refusal_message
from andon.server.cluster_upkeep import PromotionRebirths, RebirthLimiter
from andon.sparkplug.host_actions import EdgeNodeStats
from andon.storage.mes import MesChanges, MesWrite, RollupIncrement
from andon.storage.types import Sample
from andon.storage.write_spool import HistorianSpool
from andon.storage.writer_fence import NotLeader

PACK = DomainPlan("pack", assets=("Site/Pack",), edges=("Plant/Pack*",), host_id="h-pack")
FILL = DomainPlan("fill", assets=("Site/Fill",), edges=("Plant/Fill*",), host_id="h-fill")


def test_the_router_sends_what_no_domain_claims_to_the_first_domain() -> None:
    router = DomainRouter((PACK, FILL))
    assert router.domain_of_tag("Plant/Fill2/M1/Speed") == "fill"
    assert router.domain_of_tag("Plant/Pack1/Speed") == "pack"
    assert router.domain_of_tag("Other/Edge9/M1/Speed") == "pack"  # unmatched: the first
    assert router.domain_of_asset("Site/Fill/Line1") == "fill"
    assert router.domain_of_asset("Site/Elsewhere") == "pack"
    assert router.domain_of_command("spBv1.0/Plant/DCMD/Fill1/M1") == "fill"
    assert router.domain_of_command("spBv1.0/Plant/NCMD/Pack3") == "pack"
    assert router.domain_of_command("spBv1.0/STATE/h-fill") is None
    assert router.domain_of_command("spBv1.0/Plant/DDATA/Fill1/M1") is None
    with pytest.raises(ValueError, match="at least one domain"):
        DomainRouter(())


def test_derived_changes_split_by_asset_and_hooks_stay_with_their_first_asset() -> None:
    changes = MesChanges()
    changes.intervals[("Site/Pack/M1", 1)] = None
    changes.counts[("Site/Fill/M2", 2)] = None
    changes.rollups[("Site/Fill/M2", "hour", 0)] = RollupIncrement(3_600_000, "h", {})
    changes.reasons[("Site/Pack/M1", "hour", 0, "jam")] = 5
    changes.hooks.append(lambda connection: None)
    router = DomainRouter((PACK, FILL))
    parts = split_changes(changes, router.domain_of_asset)
    assert set(parts) == {"pack", "fill"}
    assert list(parts["pack"].intervals) == [("Site/Pack/M1", 1)]
    assert list(parts["pack"].reasons) == [("Site/Pack/M1", "hour", 0, "jam")]
    assert list(parts["fill"].counts) == [("Site/Fill/M2", 2)]
    assert list(parts["fill"].rollups) == [("Site/Fill/M2", "hour", 0)]
    assert len(parts["pack"].hooks) == 1  # the first domain touched
    assert parts["fill"].hooks == []
    only_hooks = MesChanges(hooks=[lambda connection: None])
    assert list(split_changes(only_hooks, router.domain_of_asset)) == [""]


class _Recorded:
    def __init__(self) -> None:
        self.written: list[MesChanges] = []

    def write_changes(self, changes: MesChanges, fence: object = None) -> None:
        self.written.append(changes)


def test_a_gated_write_made_before_a_demotion_is_never_written() -> None:
    gate = DerivedGate()
    repository = _Recorded()
    first = gate.open("pack")
    old = GatedWrite(MesWrite(repository, MesChanges()), gate, "pack", first)  # type: ignore[arg-type]
    gate.close("pack")
    with pytest.raises(NotLeader):
        old.write()
    second = gate.open("pack")
    assert second > first
    with pytest.raises(NotLeader):
        old.write()  # leading again does not make an old write valid
    newer_changes = MesChanges()
    newer_changes.counts[("Site/Pack/M1", 5)] = None
    newer = GatedWrite(MesWrite(repository, newer_changes), gate, "pack", second)  # type: ignore[arg-type]
    old.merge(newer)  # the old content is dropped, the new one kept
    assert old.generation == second
    assert old.rows == 1
    old.write()
    assert repository.written == [newer_changes]


def _edge(node: str, *, online: bool = True, birth: int | None = None) -> EdgeNodeStats:
    return EdgeNodeStats("Plant", node, online, (), 0, 0, 0, 0, 0, birth, 1)


def test_promotion_rebirths_go_once_to_edges_that_did_not_birth_again() -> None:
    plan = PromotionRebirths(10_000, 500, in_domain=lambda group, node: node != "Other")
    edges = [
        _edge("A", birth=9_000),  # born before the promotion: asked
        _edge("B", birth=10_200),  # born again after it (waits for our primary host): not
        _edge("C", online=False, birth=1),  # offline: it comes back by itself
        _edge("D", birth=None),
        _edge("Other", birth=1),  # another domain's
    ]
    assert plan.due(10_400, edges) == []  # not before the delay
    assert plan.due(10_500, edges) == [("Plant", "A"), ("Plant", "D")]
    plan.asked.add(("Plant", "A"))
    assert plan.due(11_000, edges) == [("Plant", "D")]


def test_the_rebirth_limit_spaces_requests_evenly() -> None:
    now = [100.0]
    limiter = RebirthLimiter(4.0, clock=lambda: now[0])
    assert limiter.take()
    assert not limiter.take()
    now[0] += 0.2
    assert not limiter.take()
    now[0] += 0.05
    assert limiter.take()
    now[0] += 10.0
    assert limiter.take()
    assert not limiter.take()  # no burst after a quiet time
    with pytest.raises(ValueError, match="positive"):
        RebirthLimiter(0)


def test_the_refusal_names_the_active_node_and_where_it_answers() -> None:
    lease = Lease("pack", "a", 3, 0, 0, 10_000)
    member = Member("a", 9_000, {"api_url": "http://mes-a:8080", "watermarks": {"pack": 8_000}})
    view = ClusterView(5_000, {"pack": lease}, {"a": member}, read_at_ms=5_000)
    assert refusal_message("b", "pack", "passive", view, {}) == (
        "node b is passive (hot standby) for domain pack: writes go to the active node, a at "
        "http://mes-a:8080"
    )
    configured = refusal_message("b", "pack", "passive", view, {"a": "https://proxy/a"})
    assert configured.endswith("a at https://proxy/a")
    expired = ClusterView(20_000, {"pack": lease}, {"a": member}, read_at_ms=20_000)
    assert "no node is active for it now" in refusal_message("b", "pack", "passive", expired, {})
    assert "taking over domain pack" in refusal_message("b", "pack", "promoting", view, {})
    assert leader_watermark(view, "pack") == 8_000
    assert leader_watermark(view, "fill") is None


def test_a_writes_target_comes_from_its_url_or_its_body() -> None:
    assert target_of("/api/v1/assets/Site/Pack/M1/states/5/reason", "", b"") == (
        "Site/Pack/M1",
        None,
    )
    assert target_of("/api/v1/runs", "application/json", b'{"asset": "Site/Fill"}') == (
        "Site/Fill",
        None,
    )
    assert target_of("/api/v1/tags/write", "application/json", b'{"path": "P/E/D/m"}') == (
        None,
        "P/E/D/m",
    )
    form = b"asset=Site%2FPack%2FM1&reason=jam"
    assert target_of("/fragments/operator/reason", "application/x-www-form-urlencoded", form) == (
        "Site/Pack/M1",
        None,
    )
    assert target_of("/api/v1/users", "application/json", b"not json") == (None, None)
    assert target_of("/api/v1/users", "application/json", b'["a list"]') == (None, None)


def test_a_spool_drops_only_what_was_appended_before_the_cut(tmp_path: Path) -> None:
    with HistorianSpool(tmp_path / "spool.db") as spool:
        spool.append([Sample("t", 1, 1.0)])
        cut = spool.stats().oldest_created_ms
        assert cut is not None
        assert spool.drop_created_before(cut) == (0, 0)
        assert spool.drop_created_before(cut + 1) == (1, 1)
        assert spool.counts() == (0, 0, 0)
        assert spool.stats().acked_samples_total == 1
