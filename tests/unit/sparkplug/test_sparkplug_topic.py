"""Topic namespace: parsing table, formatting, id validation."""

from __future__ import annotations

import pytest

from andon.sparkplug.errors import TopicError
from andon.sparkplug.topic import (
    MessageType,
    SparkplugTopic,
    device_topic,
    id_warning,
    node_topic,
    parse_topic,
    state_topic,
    validate_id,
)


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("spBv1.0/G/NBIRTH/N", SparkplugTopic(MessageType.NBIRTH, "G", "N")),
        ("spBv1.0/G/NDEATH/N", SparkplugTopic(MessageType.NDEATH, "G", "N")),
        ("spBv1.0/G/NDATA/N", SparkplugTopic(MessageType.NDATA, "G", "N")),
        ("spBv1.0/G/NCMD/N", SparkplugTopic(MessageType.NCMD, "G", "N")),
        ("spBv1.0/G/DBIRTH/N/D", SparkplugTopic(MessageType.DBIRTH, "G", "N", "D")),
        ("spBv1.0/G/DDEATH/N/D", SparkplugTopic(MessageType.DDEATH, "G", "N", "D")),
        ("spBv1.0/G/DDATA/N/D", SparkplugTopic(MessageType.DDATA, "G", "N", "D")),
        ("spBv1.0/G/DCMD/N/D", SparkplugTopic(MessageType.DCMD, "G", "N", "D")),
        ("spBv1.0/STATE/host-1", SparkplugTopic(MessageType.STATE, host_id="host-1")),
        ("spBv1.0/Plant 1/NDATA/Line 2", SparkplugTopic(MessageType.NDATA, "Plant 1", "Line 2")),
    ],
)
def test_valid_topics_parse_and_format_back(topic: str, expected: SparkplugTopic) -> None:
    parsed = parse_topic(topic)
    assert parsed == expected
    assert parsed.format() == topic


@pytest.mark.parametrize(
    "topic",
    [
        "spAv1.0/G/NDATA/N",
        "STATE/host",
        "spBv1.0/G/NDATA",
        "spBv1.0/G/NDATA/N/D",  # node type with a device id
        "spBv1.0/G/DDATA/N",  # device type without one
        "spBv1.0/G/XDATA/N",
        "spBv1.0/G/STATE/N",
        "spBv1.0//NDATA/N",
        "spBv1.0/G/NDATA/",
        "spBv1.0/G/DDATA/N/",
        "spBv1.0/G/NDATA/N+",
        "spBv1.0/G#/NDATA/N",
        "spBv1.0/STATE/",
        "spBv1.0/STATE/a/b",
        "spBv1.0/G/DDATA/N/D/E",
    ],
)
def test_invalid_topics_raise_topic_error(topic: str) -> None:
    with pytest.raises(TopicError):
        parse_topic(topic)


def test_helpers_build_topics_and_check_the_type() -> None:
    assert node_topic("G", MessageType.NBIRTH, "N") == "spBv1.0/G/NBIRTH/N"
    assert device_topic("G", MessageType.DDATA, "N", "D") == "spBv1.0/G/DDATA/N/D"
    assert state_topic("h") == "spBv1.0/STATE/h"
    with pytest.raises(TopicError):
        node_topic("G", MessageType.DDATA, "N")
    with pytest.raises(TopicError):
        device_topic("G", MessageType.NDATA, "N", "D")
    with pytest.raises(TopicError):
        node_topic("G/H", MessageType.NDATA, "N")


@pytest.mark.parametrize("bad", ["", "a+b", "a/b", "a#"])
def test_validate_id_rejects_empty_and_wildcards(bad: str) -> None:
    with pytest.raises(TopicError):
        validate_id(bad)


def test_spaces_are_legal_but_warned_about() -> None:
    assert validate_id("Line 1") == "Line 1"
    warning = id_warning("Line 1")
    assert warning is not None
    assert "NATS" in warning
    assert id_warning("Line1") is None
