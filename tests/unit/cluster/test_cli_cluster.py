"""``andon cluster status|switchover`` against a SQLite arbiter file, with two lease loops
running in this process as the cluster's nodes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from andon.cli.main import app
from andon.cluster.runner import LeaseRunner
from andon.settings import ServerSettings, load_settings
from andon.storage.cluster_arbiter import SqlArbiter, open_sql_arbiter
from andon.testing.processes import wait_until

CONFIG = """
database_url = "sqlite:///{db}"
[cluster]
nodes = ["a", "b"]
lease_ttl_ms = 900
demote_margin_ms = 150
watchdog_stall_ms = 600
[[cluster.domains]]
name = "line"
assets = ["Site/Line"]
candidates = [{{node = "a", priority = 1}}, {{node = "b", priority = 2}}]
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "server.toml"
    path.write_text(CONFIG.format(db=tmp_path / "andon.db"), encoding="utf-8")
    return path


@pytest.fixture
def nodes(config: Path) -> Iterator[dict[str, LeaseRunner]]:
    settings = load_settings(ServerSettings, config)
    runners: dict[str, LeaseRunner] = {}
    arbiters: list[SqlArbiter] = []
    for node in ("a", "b"):
        plan = settings.cluster.model_copy(update={"node_id": node}).plan(settings.host_id)
        opener = open_sql_arbiter if not arbiters else SqlArbiter
        arbiter = opener(settings.database_url, plan.preferences())
        arbiters.append(arbiter)
        runners[node] = LeaseRunner(arbiter, plan)
    for runner in runners.values():
        runner.start()
    yield runners
    for runner in runners.values():
        runner.stop()
    for arbiter in arbiters:
        arbiter.close()


def _cli(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["cluster", *args, "--config", str(config)])
    return result.exit_code, result.output


def test_status_and_switchover(config: Path, nodes: dict[str, LeaseRunner]) -> None:
    wait_until(lambda: nodes["a"].token("line") is not None, 15, "a never became active")
    wait_until(
        lambda: nodes["b"].roles() == {"line": "passive"} and _cli(config, "status")[0] == 0,
        15,
        "no status",
    )
    code, out = _cli(config, "status")
    assert code == 0, out
    lines = out.splitlines()
    assert any(line.split()[:1] == ["a"] and " up " in line for line in lines), out
    line_row = next(line for line in lines if line.startswith("line "))
    assert line_row.split()[1:3] == ["a", "1"], out

    code, out = _cli(config, "status", "--json")
    assert code == 0, out
    status = json.loads(out)
    assert {n["node"] for n in status["nodes"]} == {"a", "b"}
    (domain,) = status["domains"]
    assert (domain["domain"], domain["holder"], domain["epoch"]) == ("line", "a", 1)
    assert domain["candidates"] == ["a", "b"]
    assert not domain["switchover_pending"]
    assert domain["expires_at_ms"] > status["arbiter_now_ms"]

    code, out = _cli(config, "switchover", "line", "--to", "b", "--timeout", "20")
    assert code == 0, out
    assert out.strip().splitlines()[-1] == "line: a (epoch 1) -> b (epoch 2)"
    assert nodes["b"].token("line") is not None
    assert nodes["a"].token("line") is None

    code, out = _cli(config, "status", "--json")
    assert code == 0, out
    (domain,) = json.loads(out)["domains"]
    assert (domain["holder"], domain["epoch"]) == ("b", 2)


def test_switchover_refusals_are_one_line(config: Path, nodes: dict[str, LeaseRunner]) -> None:
    wait_until(lambda: nodes["a"].token("line") is not None, 15, "a never became active")
    for args, message in [
        (("switchover", "nope"), "unknown domain 'nope'"),
        (("switchover", "line", "--to", "z"), "z is not a candidate"),
        (("switchover", "line", "--to", "a"), "a already holds the lease"),
    ]:
        code, out = _cli(config, *args)
        assert code == 2, out
        assert out.startswith("andon: error: ")
        assert message in out
        assert len(out.strip().splitlines()) == 1
    assert nodes["a"].token("line") is not None  # nothing moved


def test_status_of_an_empty_cluster(tmp_path: Path, config: Path) -> None:
    code, out = _cli(config, "status")
    assert code == 0, out
    assert "(no node has reported yet)" in out
    assert "line" in out
    assert "(none)" in out
