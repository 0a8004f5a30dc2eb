"""Sparkplug B core: protobuf codec, topics, edge-node and host-application session rules.

IO-free: the sessions take events (with ``now_ms``) and return actions for an adapter to do.
Imports only the standard library and protobuf.
"""

from andon.sparkplug.actions import Disconnect, Problem, Publish, Subscribe, WillMessage
from andon.sparkplug.codec import (
    HostState,
    decode_payload,
    decode_state,
    encode_payload,
    encode_state,
    resolve_value,
)
from andon.sparkplug.edge_node import (
    BDSEQ_METRIC,
    FENCE_EPOCH_METRIC,
    REBIRTH_METRIC,
    BirthsRequired,
    CommandRejected,
    EdgeAction,
    EdgeNodeSession,
    WriteRequested,
)
from andon.sparkplug.errors import PayloadError, SessionError, TopicError
from andon.sparkplug.host import HostApplicationSession
from andon.sparkplug.host_actions import (
    DeviceOffline,
    DeviceOnline,
    EdgeNodeStats,
    HostAction,
    MetricsReceived,
    MetricsStale,
    NodeOffline,
    NodeOnline,
    ReceivedMetric,
)
from andon.sparkplug.model import (
    ARRAY_TYPES,
    FLOAT_TYPES,
    INTEGER_RANGES,
    DataType,
    Metric,
    MetricValue,
    Payload,
    PropertyValue,
    Quality,
)
from andon.sparkplug.topic import (
    NAMESPACE,
    MessageType,
    SparkplugTopic,
    device_topic,
    id_warning,
    node_topic,
    parse_topic,
    state_topic,
    validate_id,
)

__all__ = [
    "ARRAY_TYPES",
    "BDSEQ_METRIC",
    "FENCE_EPOCH_METRIC",
    "FLOAT_TYPES",
    "INTEGER_RANGES",
    "NAMESPACE",
    "REBIRTH_METRIC",
    "BirthsRequired",
    "CommandRejected",
    "DataType",
    "DeviceOffline",
    "DeviceOnline",
    "Disconnect",
    "EdgeAction",
    "EdgeNodeSession",
    "EdgeNodeStats",
    "HostAction",
    "HostApplicationSession",
    "HostState",
    "MessageType",
    "Metric",
    "MetricValue",
    "MetricsReceived",
    "MetricsStale",
    "NodeOffline",
    "NodeOnline",
    "Payload",
    "PayloadError",
    "Problem",
    "PropertyValue",
    "Publish",
    "Quality",
    "ReceivedMetric",
    "SessionError",
    "SparkplugTopic",
    "Subscribe",
    "TopicError",
    "WillMessage",
    "WriteRequested",
    "decode_payload",
    "decode_state",
    "device_topic",
    "encode_payload",
    "encode_state",
    "id_warning",
    "node_topic",
    "parse_topic",
    "resolve_value",
    "state_topic",
    "validate_id",
]
