"""``andon edge discover opc.tcp://...``: browse a server, write a tag configuration to review.

Every object under the Objects folder (but the server's own ``Server`` object) becomes one
``[[opcua]]`` device; every variable below it, at any depth, one ``[[opcua.tags]]`` named by its
browse path. Variables of a type with no Sparkplug equivalent are written commented out, and no
tag is made writable: which tags may be written is a decision for the reviewer, not a default.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds

__all__ = ["discover"]

#: OPC UA built-in DataType node ids (namespace 0) -> configuration type names.
_BUILTIN: Mapping[int, str] = {
    1: "boolean",
    2: "int8",
    3: "uint8",
    4: "int16",
    5: "uint16",
    6: "int32",
    7: "uint32",
    8: "int64",
    9: "uint64",
    10: "float",
    11: "double",
    12: "string",
    13: "datetime",
    15: "bytes",
}
_WRITE_BIT = 0x02  # AccessLevel CurrentWrite


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid TOML basic string


async def _variables(node: Node, prefix: str, depth: int) -> list[tuple[str, Node]]:
    found: list[tuple[str, Node]] = []
    if depth <= 0:
        return found
    for child in await node.get_children(refs=ObjectIds.HierarchicalReferences):
        name = (await child.read_browse_name()).Name
        path = f"{prefix}/{name}" if prefix else name
        node_class = await child.read_node_class()
        if node_class == ua.NodeClass.Variable:
            found.append((path, child))
        if node_class in (ua.NodeClass.Object, ua.NodeClass.Variable):
            found.extend(await _variables(child, path, depth - 1))
    return found


async def _discover(endpoint: str, request_timeout_s: float, depth: int) -> str:
    client = Client(endpoint, timeout=request_timeout_s)
    await client.connect()
    try:
        lines = [
            f"# Tags found on {endpoint} by `andon edge discover`. Review before use: rename",
            "# devices and tags, delete what is not needed, set writable = true where allowed.",
        ]
        for device in await client.nodes.objects.get_children():
            if device.nodeid.NamespaceIndex == 0:
                continue  # the Server object and other standard nodes
            name = (await device.read_browse_name()).Name
            tags = await _variables(device, "", depth)
            if not tags:
                continue
            lines += ["", "[[opcua]]", f"device = {_quote(name)}", f"endpoint = {_quote(endpoint)}"]
            for path, node in tags:
                datatype = await node.read_data_type()
                kind = (
                    _BUILTIN.get(int(datatype.Identifier)) if datatype.NamespaceIndex == 0 else None
                )
                access = await node.read_attribute(AttributeIds.UserAccessLevel)
                writable = bool(((access.Value.Value if access.Value else 0) or 0) & _WRITE_BIT)
                block = [
                    "[[opcua.tags]]",
                    f"name = {_quote(path)}",
                    f"node = {_quote(node.nodeid.to_string())}",
                    f"type = {_quote(kind or 'unsupported')}",
                ]
                if writable:
                    block.append("# writable on the server: writable = true to allow DCMD")
                if kind is None:
                    lines.append(f"# type {datatype.to_string()} has no Sparkplug equivalent:")
                    block = [f"# {line}" for line in block]
                lines += ["", *block]
        return "\n".join(lines) + "\n"
    finally:
        await client.disconnect()


def discover(endpoint: str, *, timeout: float = 10.0, depth: int = 6) -> str:
    """The TOML tag configuration of every device found on ``endpoint``."""
    return asyncio.run(_discover(endpoint, timeout, depth))
