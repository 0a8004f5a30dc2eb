"""The example architectures (examples/architectures, docs/architectures.md) stay runnable.

Every TOML file there is loaded with the real settings loader, as ``andon server|edge --config``
loads it, so a renamed or removed setting breaks the build; plant files must exist; the nodes
of one cluster must share one configuration; every edge must wait for a primary host that some
server of its architecture provides; every ``andon`` command written in the doc or in a file's
comments must name existing commands and options; every TOML snippet in the doc must load.
"""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest
import typer.main

from andon.cli.main import app
from andon.server.cluster_node import check_arbiter_is_historian
from andon.settings import EdgeSettings, ServerSettings, load_settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "architectures"
DOC = ROOT / "docs" / "architectures.md"
EXAMPLE_FILES = sorted(EXAMPLES.rglob("*.toml"))
ARCHITECTURES = sorted({path.parent for path in EXAMPLE_FILES})
# A command line in a code block or a TOML comment: `.venv/bin/andon ...`.
COMMAND = re.compile(r"^(?:#\s*)?(?:[A-Z_]+=\S+\s+)*\.venv/bin/andon\s+(?P<args>.*)$")


@pytest.fixture(autouse=True)
def _no_andon_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the files are checked: ANDON_ variables of the machine running the tests win over
    # them and would hide a broken file. Relative paths are the repository root's, where the
    # documented commands run.
    for name in list(os.environ):
        if name.startswith("ANDON_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(ROOT)


def _is_edge(path: Path) -> bool:
    return path.name.startswith("edge")


def _servers(directory: Path) -> list[ServerSettings]:
    return [
        load_settings(ServerSettings, path)
        for path in sorted(directory.glob("*.toml"))
        if not _is_edge(path)
    ]


def test_every_architecture_is_there() -> None:
    names = {directory.name for directory in ARCHITECTURES}
    assert names >= {
        "single-node",
        "edge-broker",
        "redundant-pair",
        "redundant-pair-postgresql",
        "dr-group",
        "hot-standby",
        "domains",
        "site-enterprise",
    }
    for directory in ARCHITECTURES:
        assert any(_is_edge(p) for p in directory.glob("*.toml")), f"{directory}: no edge"
        assert any(not _is_edge(p) for p in directory.glob("*.toml")), f"{directory}: no server"


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_example_loads_with_the_real_loader(path: Path) -> None:
    if _is_edge(path):
        load_settings(EdgeSettings, path)
        return
    settings = load_settings(ServerSettings, path)
    if settings.plant_file is not None:
        assert settings.plant_file.is_file(), f"{path}: plant_file {settings.plant_file} missing"


@pytest.mark.parametrize("directory", ARCHITECTURES, ids=lambda p: p.name)
def test_cluster_nodes_share_one_configuration(directory: Path) -> None:
    nodes = [s for s in _servers(directory) if s.cluster.domains]
    if not nodes:
        return
    node_ids = [s.cluster.node_id for s in nodes]
    assert len(set(node_ids)) == len(nodes), f"{directory}: node IDs {node_ids}"
    assert set(node_ids) == set(nodes[0].cluster.nodes), f"{directory}: a node file is missing"
    assert len({s.http_port for s in nodes}) == len(nodes), "nodes on one host need own ports"
    # Everything but the node's own ID and listening port is one shared configuration.
    own = {"http_port": True, "cluster": {"node_id": True}}
    shared = [s.model_dump(mode="json", exclude=own) for s in nodes]
    assert all(dump == shared[0] for dump in shared), f"{directory}: node files differ"
    host_ids = [d.host_id or nodes[0].host_id for d in nodes[0].cluster.domains]
    assert len(set(host_ids)) == len(host_ids), "each domain needs its own primary host ID"
    for settings in nodes:
        check_arbiter_is_historian(settings)  # raises as the server would at start
        settings.cluster.plan(settings.host_id)  # node_id must be one of cluster.nodes


@pytest.mark.parametrize("directory", ARCHITECTURES, ids=lambda p: p.name)
def test_every_edge_has_its_primary_host_and_broker(directory: Path) -> None:
    servers = _servers(directory)
    edges = [load_settings(EdgeSettings, p) for p in sorted(directory.glob("edge*.toml"))]
    hosts = {s.host_id for s in servers if not s.cluster.domains}
    brokers = {(b.host, b.port) for s in servers for b in (s.mqtt, *s.extra_brokers)}
    for server in (s for s in servers if s.cluster.domains):
        for domain in server.cluster.domains:
            hosts.add(domain.host_id or server.host_id)
    for edge in edges:
        assert edge.primary_host_id in hosts, f"{directory}: {edge.edge_node_id}"
        for broker in (edge.mqtt, *edge.fallback_brokers):
            assert (broker.host, broker.port) in brokers, f"{directory}: {edge.edge_node_id}"
        for server in (s for s in servers if s.cluster.domains):
            # The edge must belong to the domain whose primary host it waits for.
            plan = server.cluster.plan(server.host_id)
            key = f"{edge.group_id}/{edge.edge_node_id}"
            owners = [d for d in plan.domains if any(fnmatchcase(key, p) for p in d.edges)]
            owner = owners[0] if owners else plan.domains[0]
            assert owner.host_id == edge.primary_host_id, f"{directory}: {key}"


def _command_lines() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    sources = [DOC, *EXAMPLE_FILES]
    for source in sources:
        for line in source.read_text(encoding="utf-8").splitlines():
            match = COMMAND.match(line.strip())
            if match:
                found.append((f"{source.relative_to(ROOT)}: {line.strip()}", match["args"]))
    return found


def _check_command(args: str) -> None:
    """Walk the command tree of ``andon`` as the shell would: every subcommand and option must
    exist, an option's value is skipped, a --config file must exist. (Typer vendors click, so
    the tree is read through click's attributes, not its classes.)"""
    argv = shlex.split(args, comments=True)
    command: Any = typer.main.get_command(app)
    arguments: list[Any] = []  # the positional arguments of the current command
    given = 0
    index = 0
    while index < len(argv):
        token = argv[index]
        index += 1
        subcommands: dict[str, Any] = getattr(command, "commands", {})
        if token.startswith("-"):
            name = token.split("=", 1)[0]
            params = [p for p in command.params if name in (*p.opts, *p.secondary_opts)]
            assert params, f"andon {command.name}: no option {name}"
            option = params[0]
            takes_value = option.param_type_name == "option" and not option.is_flag
            if takes_value and "=" not in token:
                assert index < len(argv), f"{name} needs a value"
                if name in ("--config", "-c"):
                    assert (ROOT / argv[index]).is_file(), f"{argv[index]} does not exist"
                index += 1
        elif token in subcommands:
            command = subcommands[token]
            arguments = [p for p in command.params if p.param_type_name == "argument"]
            given = 0
        else:
            assert not subcommands, f"andon {command.name}: no command {token!r}"
            assert given < len(arguments), f"andon {command.name}: unexpected {token!r}"
            given += 1
    missing = [a.name for a in arguments[given:] if a.required]
    assert not missing, f"andon {command.name}: missing {', '.join(missing)}"
    if getattr(command, "commands", None):
        assert command.invoke_without_command, f"andon {command.name} needs a command"


def test_documented_commands_exist() -> None:
    lines = _command_lines()
    assert len(lines) > 20  # the doc and the examples carry their start commands
    for where, args in lines:
        try:
            _check_command(args)
        except AssertionError as exc:
            raise AssertionError(f"{where}: {exc}") from exc


def _toml_snippets() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_toml_snippets_in_the_doc_load(tmp_path: Path) -> None:
    snippets = _toml_snippets()
    assert snippets
    for number, snippet in enumerate(snippets):
        tomllib.loads(snippet)  # a clear error first if it is not TOML at all
        path = tmp_path / f"snippet-{number}.toml"
        path.write_text(snippet, encoding="utf-8")
        # Edge snippets say so on their first line; all others are server settings.
        is_edge = snippet.lstrip().startswith("# edge")
        load_settings(EdgeSettings if is_edge else ServerSettings, path)


def test_doc_names_only_existing_example_files() -> None:
    text = DOC.read_text(encoding="utf-8")
    named = set(re.findall(r"examples/architectures/[\w./-]+", text))
    assert named
    for name in named:
        assert (ROOT / name.rstrip(".")).exists(), f"docs/architectures.md names {name}"
    for directory in ARCHITECTURES:
        assert f"examples/architectures/{directory.name}" in text, directory.name
