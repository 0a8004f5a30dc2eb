"""``andon edge discover`` against asyncua's own server: the tag configuration it writes.

The server has a variable of each supported type on one object, one in a folder below it, and
two whose types have no Sparkplug equivalent. The written TOML lists every supported variable
with its type and node id, comments out the others, makes nothing writable, loads back as a
valid edge configuration, and that configuration reads the server's values.
"""

from __future__ import annotations

import datetime
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _opcua_rig import DEVICE, VARIABLES, OpcUaServer
from _sandf_rig import wait_for
from asyncua import ua
from typer.testing import CliRunner

from andon.cli.main import app
from andon.edge.sources.opcua import OpcUaSource
from andon.settings import EdgeSettings, load_settings
from andon.testing.ports import free_port

pytestmark = pytest.mark.integration

STAMP = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
#: Variables added below the device: browse path -> (variant, value, expected type or None).
EXTRA: dict[str, tuple[ua.VariantType, Any, str | None]] = {
    "Process/Pressure": (ua.VariantType.Double, 2.5, "double"),
    "Stamp": (ua.VariantType.DateTime, STAMP, "datetime"),
    "Blob": (ua.VariantType.ByteString, b"\x01\x02", "bytes"),
    "Label": (ua.VariantType.LocalizedText, ua.LocalizedText("Filler"), None),
    "BatchGuid": (ua.VariantType.Guid, ua.Guid("72962b91-fa75-4ae6-8d28-b404dc7daf63"), None),
}


async def _add_extra(server: OpcUaServer) -> None:
    assert server.server is not None
    idx = await server.server.get_namespace_index("urn:andon:test")
    machine = await server.server.nodes.objects.get_child(f"{idx}:{DEVICE}")
    folder = await machine.add_folder(idx, "Process")
    for path, (vtype, value, _) in EXTRA.items():
        parent, leaf = (folder, path.split("/")[1]) if "/" in path else (machine, path)
        await parent.add_variable(
            ua.NodeId(f"{DEVICE}.{path}", idx), leaf, ua.Variant(value, vtype)
        )


@pytest.fixture
def opcua_server() -> Iterator[OpcUaServer]:
    server = OpcUaServer(free_port())
    server.start()
    server.run(_add_extra(server))
    try:
        yield server
    finally:
        server.close()


def test_discover_writes_a_configuration_that_loads_and_reads(
    opcua_server: OpcUaServer, tmp_path: Path
) -> None:
    output = tmp_path / "tags.toml"
    result = CliRunner().invoke(app, ["edge", "discover", opcua_server.endpoint, "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert f"wrote {output}" in result.output
    text = output.read_text(encoding="utf-8")

    [device] = tomllib.loads(text)["opcua"]
    assert (device["device"], device["endpoint"]) == (DEVICE, opcua_server.endpoint)
    found = {tag["name"]: (tag["type"], tag["node"]) for tag in device["tags"]}
    expected = {name: kind for name, (_, _, kind) in VARIABLES.items()}
    expected.update({path: kind for path, (_, _, kind) in EXTRA.items() if kind is not None})
    assert {name: kind for name, (kind, _) in found.items()} == expected
    assert found["Process/Pressure"][1] == f"ns=2;s={DEVICE}.Process/Pressure"
    # No Sparkplug type: written for the reviewer, commented out.
    assert '# name = "Label"' in text
    assert '# name = "BatchGuid"' in text
    assert "has no Sparkplug equivalent" in text
    # Writable on the server, but writing is the reviewer's decision: only a hint.
    assert all("writable" not in tag for tag in device["tags"])
    assert "# writable on the server: writable = true to allow DCMD" in text

    settings = load_settings(EdgeSettings, output)
    [config] = settings.opcua
    assert [tag.name for tag in config.tags] == list(found)
    source = OpcUaSource(settings.opcua)
    source.start()
    try:
        values: dict[str, Any] = {}

        def read_all() -> dict[str, Any]:
            values.update({c.name: c.value for c in source.poll(0)})
            return values if len(values) == len(found) else {}

        wait_for(read_all, lambda: f"the discovered configuration read only {sorted(values)}")
    finally:
        source.stop()
    assert {name: values[name] for name in VARIABLES} == pytest.approx(
        {name: value for name, (_, value, _) in VARIABLES.items()}
    )
    assert values["Process/Pressure"] == 2.5
    assert values["Stamp"] == int(STAMP.timestamp() * 1000)
    assert values["Blob"] == b"\x01\x02"
