"""Asset hierarchy, groups, state maps, modes and the reason tree."""

from __future__ import annotations

import pytest

from andon.domain import (
    CHANGEOVER,
    IDLE,
    MAINTENANCE,
    PRODUCTION,
    Asset,
    AssetGroup,
    AssetKind,
    AssetPath,
    AssetTree,
    DomainError,
    Mode,
    Reason,
    ReasonTree,
    StateType,
    accounted_type,
)

P = AssetPath.parse


def _tree() -> AssetTree:
    return AssetTree(
        [
            Asset(P("Acme"), AssetKind.ENTERPRISE),
            Asset(P("Acme/Plant1"), AssetKind.SITE, timezone="Europe/Prague"),
            Asset(P("Acme/Plant1/Bottling"), AssetKind.AREA),
            Asset(P("Acme/Plant1/Bottling/Line1"), AssetKind.LINE),
            Asset(P("Acme/Plant1/Bottling/Line1/Filler1"), AssetKind.CELL),
            Asset(P("Acme/Plant1/Bottling/Line1/Filler1/Valve"), AssetKind.OTHER),
        ]
    )


def test_paths_parse_format_and_validate() -> None:
    path = P("Acme/Plant1/Line1")
    assert str(path) == "Acme/Plant1/Line1"
    assert path.parent == P("Acme/Plant1")
    assert P("Acme").is_ancestor_of(path)
    assert not path.is_ancestor_of(path)
    for bad in ("", "Acme//Line", "Acme/Li+ne", "Acme/#", " Acme"):
        with pytest.raises(DomainError):
            P(bad)


def test_tree_navigation_and_site_timezone() -> None:
    tree = _tree()
    filler = P("Acme/Plant1/Bottling/Line1/Filler1")
    assert [a.name for a in tree.ancestors(filler)] == ["Line1", "Bottling", "Plant1", "Acme"]
    assert [a.name for a in tree.descendants(P("Acme/Plant1/Bottling"))] == [
        "Line1",
        "Filler1",
        "Valve",
    ]
    assert [a.name for a in tree.children(P("Acme/Plant1/Bottling/Line1"))] == ["Filler1"]
    assert tree.site_of(filler).zone.key == "Europe/Prague"
    with pytest.raises(DomainError, match="parent Acme/Plant2 is unknown"):
        tree.add(Asset(P("Acme/Plant2/Area"), AssetKind.AREA))
    with pytest.raises(DomainError, match="not inside a site"):
        tree.site_of(P("Acme"))
    with pytest.raises(DomainError, match="needs a timezone"):
        Asset(P("Acme/Plant3"), AssetKind.SITE)
    with pytest.raises(DomainError, match="only a site carries a timezone"):
        Asset(P("Acme/Line"), AssetKind.LINE, timezone="UTC")


def test_groups_name_known_assets() -> None:
    tree = _tree()
    tree.add_group(AssetGroup("Bottlenecks", frozenset({P("Acme/Plant1/Bottling/Line1")})))
    assert tree.group("Bottlenecks").members == {P("Acme/Plant1/Bottling/Line1")}
    with pytest.raises(DomainError, match="names unknown assets"):
        tree.add_group(AssetGroup("Bad", frozenset({P("Acme/Nowhere")})))


def test_accounting_precedence() -> None:
    stop = StateType.UNPLANNED_DOWNTIME
    assert accounted_type(stop, PRODUCTION) is stop
    assert accounted_type(stop, CHANGEOVER) is StateType.SETUP
    assert accounted_type(stop, MAINTENANCE) is StateType.PLANNED_DOWNTIME
    assert accounted_type(stop, IDLE) is StateType.NOT_SCHEDULED
    assert accounted_type(stop, CHANGEOVER, in_break=True) is StateType.PLANNED_DOWNTIME
    assert accounted_type(stop, PRODUCTION, scheduled=False) is StateType.NOT_SCHEDULED
    running = StateType.RUNNING
    assert accounted_type(running, MAINTENANCE, in_break=True, scheduled=False) is running
    assert not StateType.BLOCKED.is_failure
    assert StateType.BLOCKED.is_availability_loss
    assert not StateType.PLANNED_DOWNTIME.in_planned_production_time
    with pytest.raises(DomainError, match="cannot turn a stop into running"):
        Mode("Fake", StateType.RUNNING)


def test_reason_tree() -> None:
    tree = ReasonTree(
        [
            Reason("mech", "Mechanical"),
            Reason("conv", "Conveyor", "mech"),
            Reason("jam", "Jam", "conv"),
            Reason("ops", "Operator"),
        ]
    )
    assert tree.path("jam") == ("Mechanical", "Conveyor", "Jam")
    assert tree.category_of("jam").id == "mech"
    assert {r.id for r in tree.leaves()} == {"jam", "ops"}
    with pytest.raises(DomainError, match="unknown parent 'x'"):
        ReasonTree([Reason("a", "A", "x")])
    with pytest.raises(DomainError, match="cycle"):
        ReasonTree([Reason("a", "A", "b"), Reason("b", "B", "a")])
    with pytest.raises(DomainError, match="used twice"):
        ReasonTree([Reason("a", "A"), Reason("a", "B")])
