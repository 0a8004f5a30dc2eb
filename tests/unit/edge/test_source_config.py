"""Tag configuration of OPC UA and Modbus devices: errors name the file, the line and the
field; the spool keeps a value's quality and still reads version-1 records; register codecs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from andon.edge.sources.base import TagChange
from andon.edge.sources.config import ModbusTagConfig
from andon.edge.sources.modbus import decode_tag, encode_tag
from andon.edge.spool_codec import decode_changes, encode_changes
from andon.settings import EdgeSettings, load_settings

GOOD_FILE = """\
group_id = "Plant1"

[[modbus]]
device = "Press1"
host = "10.0.0.5"
unit_id = 3

[[modbus.tags]]
name = "Count"
table = "holding"
address = 100
type = "uint32"
word_order = "little"

[[modbus.tags]]
name = "Temp"
table = "input"
address = 0
type = "int16"
scale = 0.1

[[opcua]]
device = "Filler1"
endpoint = "opc.tcp://10.0.0.7:4840/plc"

[[opcua.tags]]
name = "State"
node = "ns=2;s=Filler1.State"
type = "int16"
"""


def _error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "edge.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match="invalid settings") as caught:
        load_settings(EdgeSettings, path)
    return str(caught.value)


def test_a_valid_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(GOOD_FILE)
    settings = load_settings(EdgeSettings, path)
    assert [d.device for d in settings.modbus] == ["Press1"]
    assert settings.modbus[0].tags[0].size == 2
    assert settings.opcua[0].tags[0].node == "ns=2;s=Filler1.State"


def test_unknown_type_names_file_line_and_field(tmp_path: Path) -> None:
    message = _error(tmp_path, GOOD_FILE.replace('type = "uint32"', 'type = "uint33"'))
    assert f"{tmp_path / 'edge.toml'}:12: modbus[0].tags[0].type: Input should be" in message


def test_overlapping_registers_name_the_second_tag(tmp_path: Path) -> None:
    overlapping = (
        GOOD_FILE.replace("address = 0", "address = 0\n", 1)
        .replace('table = "input"', 'table = "holding"')
        .replace("address = 0\n", "address = 101\n", 1)
    )
    message = _error(tmp_path, overlapping)
    assert ":18: modbus[0].tags[1].address: holding 101 of 'Temp' overlaps 'Count'" in message


def test_bad_endpoint_and_bad_node(tmp_path: Path) -> None:
    text = GOOD_FILE.replace("opc.tcp://10.0.0.7:4840/plc", "http://10.0.0.7")
    message = _error(tmp_path, text)
    assert ":24: opcua[0].endpoint: 'http://10.0.0.7' is not opc.tcp://" in message
    text = GOOD_FILE.replace("ns=2;s=Filler1.State", "Filler1.State")
    message = _error(tmp_path, text)
    assert ":28: opcua[0].tags[0].node: 'Filler1.State' is not a node id" in message


def test_security_needs_certificate_and_devices_are_unique(tmp_path: Path) -> None:
    secured = GOOD_FILE.replace(
        'endpoint = "opc.tcp://10.0.0.7:4840/plc"',
        'endpoint = "opc.tcp://10.0.0.7:4840/plc"\n'
        'security_policy = "Basic256Sha256"\nsecurity_mode = "SignAndEncrypt"',
    )
    assert "opcua[0].certificate: SignAndEncrypt needs certificate" in _error(tmp_path, secured)
    twice = GOOD_FILE.replace('device = "Filler1"', 'device = "Press1"')
    assert ".device: device 'Press1' is declared twice" in _error(tmp_path, twice)


def test_bits_and_registers_do_not_mix(tmp_path: Path) -> None:
    text = GOOD_FILE.replace('table = "input"', 'table = "coil"')
    assert "modbus[0].tags[1].type: a coil holds bits" in _error(tmp_path, text)


def _tag(**fields: object) -> ModbusTagConfig:
    return ModbusTagConfig.model_validate({"name": "T", "table": "holding", "address": 0, **fields})


@pytest.mark.parametrize(
    ("fields", "value"),
    [
        ({"type": "int16"}, -32768),
        ({"type": "uint32", "word_order": "little"}, 4_294_967_295),
        ({"type": "int32", "byte_order": "little"}, -123456),
        ({"type": "float32"}, 3.5),
        ({"type": "float64", "word_order": "little", "byte_order": "little"}, 1e-300),
        ({"type": "string", "length": 3}, "AB12"),
        ({"type": "int16", "scale": 0.5, "offset": 10.0}, 12.5),
    ],
)
def test_register_round_trip(fields: dict[str, object], value: object) -> None:
    tag = _tag(**fields)
    assert decode_tag(tag, encode_tag(tag, value)) == value  # type: ignore[arg-type]


def test_register_writes_are_checked() -> None:
    with pytest.raises(ValueError, match="cannot hold"):
        encode_tag(_tag(type="uint16"), 70000)
    with pytest.raises(ValueError, match="accepts"):
        encode_tag(_tag(type="uint16", max=100), 101)
    with pytest.raises(ValueError, match="characters"):
        encode_tag(_tag(type="string", length=1), "ABC")
    with pytest.raises(ValueError, match="integer"):
        encode_tag(_tag(type="int16"), 1.5)


def test_spool_keeps_quality_and_reads_version_1() -> None:
    changes = (
        TagChange("D", "a", 1, 1000),
        TagChange("D", "b", None, 1001, quality=0),
        TagChange("D", "c", 2.5, 1002, quality=500),
    )
    payload = encode_changes("D", changes)
    assert payload[0] == 2
    assert decode_changes("D", payload) == changes
    good = changes[:1]
    assert encode_changes("D", good)[0] == 1  # all GOOD: the old format, byte for byte
    old = bytes((1,)) + json.dumps([1000, ["a", "b"], [0, 5], [1, "x"]]).encode()
    assert decode_changes("D", old) == (
        TagChange("D", "a", 1, 1000),
        TagChange("D", "b", "x", 1005),
    )
