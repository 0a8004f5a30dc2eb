"""Domain maps and the [cluster] settings: defaults, the plan they give, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from andon.cluster.domains import DomainMap
from andon.cluster.plan import DEFAULT_DOMAIN, DomainPlan
from andon.settings import ServerSettings, load_settings

PACKING = DomainPlan(
    "packing", assets=("Site1/Packing",), edges=("Plant1/Pack*",), host_id="mes-pack"
)
FILLING = DomainPlan(
    "filling",
    assets=("/Site1/Filling/", "Site1/Filling/Line9", "Site2"),
    edges=("Plant1/Fill?", "Plant2/*"),
)


def test_assets_map_by_whole_path_segments() -> None:
    domains = DomainMap([PACKING, FILLING])
    assert domains.domain_of_asset("Site1/Packing") == "packing"
    assert domains.domain_of_asset("Site1/Packing/Line1/Capper") == "packing"
    assert domains.domain_of_asset("Site1/Packing2/Line1") is None
    assert domains.domain_of_asset("Site1/Filling/Line9/F1") == "filling"
    assert domains.domain_of_asset("/Site2/X/") == "filling"
    assert domains.domain_of_asset("Site3") is None


def test_edges_map_by_glob_in_configured_order() -> None:
    domains = DomainMap([PACKING, FILLING, DomainPlan("rest", edges=("*",))])
    assert domains.domain_of_edge("Plant1", "Pack3") == "packing"
    assert domains.domain_of_edge("Plant1", "Fill1") == "filling"
    assert domains.domain_of_edge("Plant1", "Fill10") == "rest"
    assert domains.domain_of_edge("Plant2", "Anything") == "filling"
    assert DomainMap([PACKING]).domain_of_edge("Plant9", "X") is None
    assert domains.host_id_of("packing") == "mes-pack"
    with pytest.raises(KeyError):
        domains.host_id_of("nope")


def test_no_domains_is_one_implicit_domain_led_by_this_server() -> None:
    settings = load_settings(ServerSettings, host_id="mes1")
    plan = settings.cluster.plan(settings.host_id)
    assert plan.node_id == "mes1"
    assert [d.name for d in plan.domains] == [DEFAULT_DOMAIN]
    assert plan.led_domains() == plan.domains
    assert plan.preferences() == {DEFAULT_DOMAIN: ()}  # unranked: whoever asks
    assert (plan.timing.ttl_ms, plan.timing.renew_interval_ms) == (3_000, 1_000)
    assert plan.timing.demote_margin_ms == 500
    domains = DomainMap(plan.domains)
    assert domains.domain_of_asset("Any/Asset/At/All") == DEFAULT_DOMAIN
    assert domains.domain_of_edge("G", "N") == DEFAULT_DOMAIN
    assert domains.host_id_of(DEFAULT_DOMAIN) == "mes1"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "server.toml"
    path.write_text(text, encoding="utf-8")
    return path


TWO_DOMAINS = """
host_id = "mes"
[cluster]
node_id = "b"
nodes = ["a", "b", "dr"]
lease_ttl_ms = 6000
[[cluster.domains]]
name = "packing"
assets = ["Site1/Packing"]
edges = ["Plant1/Pack*"]
host_id = "mes-pack"
candidates = [{node = "dr", priority = 9}, {node = "a", priority = 1}, {node = "b", priority = 2}]
[[cluster.domains]]
name = "filling"
assets = ["Site1/Filling"]
candidates = [{node = "b"}, {node = "a"}]
"""


def test_domains_from_toml_give_ranked_candidates(tmp_path: Path) -> None:
    settings = load_settings(ServerSettings, _write(tmp_path, TWO_DOMAINS))
    plan = settings.cluster.plan(settings.host_id)
    assert plan.node_id == "b"
    assert plan.timing.renew_interval_ms == 2_000  # ttl / 3
    assert plan.preferences() == {"packing": ("a", "b", "dr"), "filling": ("b", "a")}
    assert plan.domain("packing").host_id == "mes-pack"
    assert plan.domain("filling").host_id == "mes"  # the server's by default
    assert [d.name for d in plan.led_domains()] == ["packing", "filling"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('{node = "b"}, {node = "a"}', '{node = "b"}, {node = "x"}'), "unknown node 'x'"),
        (('name = "filling"', 'name = "packing"'), "domain 'packing' twice"),
        (('assets = ["Site1/Filling"]', 'assets = ["Site1/Packing/Line2"]'), "overlaps"),
        (('assets = ["Site1/Filling"]', 'assets = [""]'), "overlaps"),
        (("lease_ttl_ms = 6000", "lease_ttl_ms = 400"), "must be shorter than the lease ttl"),
        (("lease_ttl_ms = 6000", "lease_ttl_ms = 6000\nwatchdog_stall_ms = 100"), "exceed"),
        (('{node = "b"}, {node = "a"}', '{node = "b"}, {node = "b"}'), "listed twice"),
        (('{node = "b"}, {node = "a"}', ""), "at least 1"),
    ],
)
def test_bad_cluster_settings_name_the_problem(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    old, new = change
    assert old in TWO_DOMAINS
    path = _write(tmp_path, TWO_DOMAINS.replace(old, new, 1))
    with pytest.raises(ValueError, match=message) as raised:
        load_settings(ServerSettings, path)
    assert str(path) in str(raised.value)
    assert "cluster" in str(raised.value)


def test_the_node_must_be_one_of_the_listed_nodes(tmp_path: Path) -> None:
    path = _write(tmp_path, TWO_DOMAINS.replace('node_id = "b"', 'node_id = "c"'))
    settings = load_settings(ServerSettings, path)  # fine for the CLI, run from anywhere
    assert settings.cluster.plan(settings.host_id, as_member=False).node_id == "c"
    with pytest.raises(ValueError, match=r"this node 'c' is not in cluster\.nodes"):
        settings.cluster.plan(settings.host_id)


def test_the_environment_sets_the_node(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ANDON_CLUSTER__NODE_ID", "a")
    settings = load_settings(ServerSettings, _write(tmp_path, TWO_DOMAINS))
    assert settings.cluster.plan(settings.host_id).node_id == "a"
