"""OPC UA source (asyncua): monitored items, reconnect and re-subscribe, security, writes.

asyncua is asyncio-based; the source runs one event loop in its own thread with one task per
device (one session each). Subscription callbacks and periodic reads push changes into a
bounded ``ChangeBuffer`` that the synchronous ``poll`` drains. A device is marked answering only
after all its current values were read, so its DBIRTH is complete and current; a lost session
marks it lost (DDEATH) and the task reconnects with a doubling backoff, then subscribes again.

Values keep the server's source timestamp. Status codes map to the Sparkplug ``Quality``
property: Good -> GOOD (192), Uncertain -> STALE (500: a value the server itself does not vouch
for as current), Bad -> BAD (0, with a null value when the server sent none).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.crypto import security_policies, uacrypto
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.uaerrors import UaStatusCodeError
from cryptography import x509

from andon.edge.sources.base import ChangeBuffer, TagChange, TagSpec, WriteResult
from andon.edge.sources.config import OPCUA_TYPES, OpcUaDeviceConfig, OpcUaTagConfig
from andon.sparkplug.model import INTEGER_RANGES, DataType, MetricValue, Quality
from andon.testing.clock import Clock, SystemClock

__all__ = ["OpcUaSource", "quality_of", "to_metric_value"]

log = logging.getLogger(__name__)

_VARIANTS: Mapping[DataType, ua.VariantType] = {
    DataType.BOOLEAN: ua.VariantType.Boolean,
    DataType.INT8: ua.VariantType.SByte,
    DataType.INT16: ua.VariantType.Int16,
    DataType.INT32: ua.VariantType.Int32,
    DataType.INT64: ua.VariantType.Int64,
    DataType.UINT8: ua.VariantType.Byte,
    DataType.UINT16: ua.VariantType.UInt16,
    DataType.UINT32: ua.VariantType.UInt32,
    DataType.UINT64: ua.VariantType.UInt64,
    DataType.FLOAT: ua.VariantType.Float,
    DataType.DOUBLE: ua.VariantType.Double,
    DataType.STRING: ua.VariantType.String,
    DataType.DATETIME: ua.VariantType.DateTime,
    DataType.BYTES: ua.VariantType.ByteString,
}
_POLICIES: Mapping[str, Any] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256_Sha256_RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}


def _ms(when: datetime | None) -> int | None:
    if when is None:
        return None
    if when.tzinfo is None:  # asyncua gives naive UTC datetimes
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


#: The application URI announced when neither the configuration nor the certificate has one.
_DEFAULT_APPLICATION_URI = "urn:andon:edge"


def _application_uri(certificate: x509.Certificate) -> str:
    """The URI in the certificate's subjectAltName (OPC UA application certificates have one)."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return _DEFAULT_APPLICATION_URI
    uris = names.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else _DEFAULT_APPLICATION_URI


def quality_of(status: ua.StatusCode | None) -> int:
    if status is None or status.is_good():
        return int(Quality.GOOD)
    return int(Quality.STALE if status.is_uncertain() else Quality.BAD)


def to_metric_value(datatype: DataType, raw: Any) -> MetricValue:
    """The OPC UA value as the tag's Sparkplug type; ValueError when it does not convert."""
    if raw is None:
        return None
    if datatype is DataType.BOOLEAN:
        return bool(raw)
    if datatype is DataType.DATETIME:
        if not isinstance(raw, datetime):
            raise ValueError(f"expected a DateTime, got {type(raw).__name__}")
        return _ms(raw)
    if datatype in INTEGER_RANGES:
        if isinstance(raw, float) and not raw.is_integer():
            raise ValueError(f"{raw!r} is not an integer")
        return int(raw)
    if datatype in (DataType.FLOAT, DataType.DOUBLE):
        return float(raw)
    if datatype is DataType.STRING:
        return str(raw)
    if datatype is DataType.BYTES:
        return bytes(raw)
    raise ValueError(f"no conversion to {datatype.name}")


def _initial(datatype: DataType) -> MetricValue:
    if datatype is DataType.BOOLEAN:
        return False
    if datatype is DataType.STRING:
        return ""
    if datatype is DataType.BYTES:
        return b""
    return 0.0 if datatype in (DataType.FLOAT, DataType.DOUBLE) else 0


class _Device:
    """One device's session: connect, read everything, subscribe, wait for the loss, repeat."""

    def __init__(self, config: OpcUaDeviceConfig, buffer: ChangeBuffer, clock: Clock) -> None:
        self.config = config
        self.tags = {tag.name: tag for tag in config.tags}
        self._by_node: dict[str, OpcUaTagConfig] = {}
        self._buffer = buffer
        self._clock = clock
        self._last: dict[str, tuple[MetricValue, int, int]] = {}
        self.client: Client | None = None
        self._lost = asyncio.Event()
        #: Why the device is not connected ("" while it is): a refused login, an untrusted
        #: certificate, no answer.
        self.last_error = ""

    def _change(self, tag: OpcUaTagConfig, data: ua.DataValue) -> TagChange | None:
        datatype = OPCUA_TYPES[tag.type]
        quality = quality_of(data.StatusCode)
        try:
            value = to_metric_value(datatype, data.Value.Value if data.Value else None)
        except (ValueError, TypeError, OverflowError) as exc:
            log.warning("%s/%s: %s", self.config.device, tag.name, exc)
            value, quality = None, int(Quality.BAD)
        ts = _ms(data.SourceTimestamp) or _ms(data.ServerTimestamp) or self._clock.now_ms()
        seen = (value, ts, quality)
        if self._last.get(tag.name) == seen:
            return None  # the first notification repeats the initial read
        self._last[tag.name] = seen
        return TagChange(self.config.device, tag.name, value, ts, quality)

    # asyncua's subscription handler interface
    def datachange_notification(self, node: Node, val: Any, data: Any) -> None:
        del val
        tag = self._by_node.get(node.nodeid.to_string())
        if tag is None:
            return
        change = self._change(tag, data.monitored_item.Value)
        if change is not None:
            self._buffer.push([change])

    def status_change_notification(self, status: Any) -> None:
        log.warning("%s: subscription status %s", self.config.device, status)
        self._lost.set()

    async def _on_connection_lost(self, exc: Exception) -> None:
        log.warning("opc ua device %s lost: %s", self.config.device, exc)
        self._lost.set()

    async def _connect(self) -> Client:
        cfg = self.config
        client = Client(cfg.endpoint, timeout=cfg.timeout_s, watchdog_intervall=cfg.timeout_s)
        if cfg.security_mode != "None":
            assert cfg.certificate is not None  # checked by the configuration
            assert cfg.private_key is not None
            # Servers check that the application URI we announce is the one in our certificate
            # (BadCertificateUriInvalid otherwise): announce the certificate's own.
            certificate = await uacrypto.load_certificate(str(cfg.certificate))
            client.application_uri = cfg.application_uri or _application_uri(certificate)
            await client.set_security(
                _POLICIES[cfg.security_policy],
                str(cfg.certificate),
                str(cfg.private_key),
                server_certificate=str(cfg.server_certificate) if cfg.server_certificate else None,
                mode=getattr(ua.MessageSecurityMode, cfg.security_mode),
            )
        if cfg.username is not None:
            client.set_user(cfg.username)
        if cfg.password is not None:
            client.set_password(cfg.password.get_secret_value())
        client.connection_lost_callback = self._on_connection_lost
        await client.connect()
        return client

    async def _read_all(self, client: Client, nodes: Sequence[Node]) -> list[TagChange]:
        values = await client.uaclient.read_attributes(
            [n.nodeid for n in nodes], AttributeIds.Value
        )
        changes = []
        for tag, data in zip(self.config.tags, values, strict=True):
            change = self._change(tag, data)
            if change is not None:
                changes.append(change)
        return changes

    async def _subscribe(self, client: Client, nodes: Sequence[Node]) -> None:
        cfg = self.config
        subscription = await client.create_subscription(cfg.publishing_interval_ms, self)
        requests = []
        for tag, node in zip(cfg.tags, nodes, strict=True):
            deadband = None
            if tag.deadband:
                deadband = ua.DataChangeFilter(
                    Trigger=ua.DataChangeTrigger.StatusValueTimestamp,
                    DeadbandType=ua.DeadbandType.Absolute,
                    DeadbandValue=tag.deadband,
                )
            sampling = tag.sampling_interval_ms
            request = subscription._make_monitored_item_request(
                node,
                AttributeIds.Value,
                deadband,
                queuesize=10,  # keeps every change between two publishes, in order
                monitoring=ua.MonitoringMode.Reporting,
                sampling_interval=ua.Double(
                    cfg.sampling_interval_ms if sampling is None else sampling
                ),
            )
            requests.append(request)
        results = await subscription.create_monitored_items(requests)
        for tag, result in zip(cfg.tags, results, strict=True):
            if isinstance(result, ua.StatusCode):  # e.g. a node that does not exist
                raise ValueError(f"cannot monitor {tag.name} ({tag.node}): {result}")

    async def run(self) -> None:
        cfg = self.config
        backoff = cfg.backoff_initial_s
        while True:
            self._lost.clear()
            try:
                client = self.client = await self._connect()
                nodes = [client.get_node(tag.node) for tag in cfg.tags]
                self._by_node = {
                    node.nodeid.to_string(): tag for tag, node in zip(cfg.tags, nodes, strict=True)
                }
                self._last.clear()  # the first full read after a loss: every value, current
                self._buffer.push(await self._read_all(client, nodes), online=cfg.device)
                if cfg.subscribe:  # after the read: its first notifications repeat it (dropped)
                    await self._subscribe(client, nodes)
                log.info("opc ua device %s connected to %s", cfg.device, cfg.endpoint)
                self.last_error = ""
                backoff = cfg.backoff_initial_s
                while not self._lost.is_set():
                    if cfg.subscribe:
                        await self._lost.wait()
                    else:
                        await asyncio.sleep(cfg.poll_interval_s)
                        self._buffer.push(await self._read_all(client, nodes))
            except asyncio.CancelledError:
                await self._disconnect()
                raise
            except Exception as exc:  # any failure of the session: lost, retry
                self._failed(exc)
            self._buffer.lost(cfg.device)
            await self._disconnect()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, cfg.backoff_max_s)

    def _failed(self, exc: Exception) -> None:
        """Log why the session failed or could not start, once per new reason (a refused login
        fails the same way at every retry), and keep it in ``last_error``."""
        cfg = self.config
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError):
            reason = f"no answer within {cfg.timeout_s} s"
            if cfg.server_certificate is not None:
                # A server that cannot decrypt our request (encrypted for another certificate)
                # drops it without an answer.
                reason += " (is server_certificate the certificate of this server?)"
        level = logging.DEBUG if reason == self.last_error else logging.WARNING
        log.log(level, "opc ua device %s (%s): %s", cfg.device, cfg.endpoint, reason)
        self.last_error = reason

    async def _disconnect(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            try:
                await asyncio.wait_for(client.disconnect(), self.config.timeout_s)
            except Exception:  # the server may be gone already
                log.debug("disconnect of %s failed", self.config.device, exc_info=True)

    async def write(self, tag: OpcUaTagConfig, value: MetricValue) -> None:
        client = self.client
        if client is None or not self._buffer.is_online(self.config.device):
            raise ConnectionError(f"device {self.config.device} is not connected")
        datatype = OPCUA_TYPES[tag.type]
        raw: Any = value
        if datatype is DataType.DATETIME and isinstance(value, int):
            raw = datetime.fromtimestamp(value / 1000, tz=UTC)
        variant = ua.Variant(raw, _VARIANTS[datatype])
        await client.get_node(tag.node).write_value(ua.DataValue(variant))


class OpcUaSource:
    """Every configured OPC UA device; ``start`` before the first poll."""

    def __init__(
        self,
        devices: Sequence[OpcUaDeviceConfig],
        *,
        clock: Clock | None = None,
        max_buffered: int = 100_000,
    ) -> None:
        self._buffer = ChangeBuffer((d.device for d in devices), max_buffered)
        clock = clock or SystemClock()
        for config in devices:
            if config.security_mode != "None" and config.server_certificate is None:
                # Encrypted, but to whoever answers: a man in the middle presenting any
                # certificate gets the session, and with it the user name and password.
                log.warning(
                    "opc ua device %s: %s without server_certificate trusts any server "
                    "certificate; set server_certificate to the server's own certificate",
                    config.device,
                    config.security_mode,
                )
        self._devices = {d.device: _Device(d, self._buffer, clock) for d in devices}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="andon-opcua", daemon=True
        )
        self._tasks: list[asyncio.Task[None]] = []

    def describe(self) -> Mapping[str, Sequence[TagSpec]]:
        return {
            name: [
                TagSpec(
                    t.name,
                    OPCUA_TYPES[t.type],
                    _initial(OPCUA_TYPES[t.type]),
                    unit=t.unit,
                    writable=t.writable,
                    description=t.description,
                )
                for t in device.config.tags
            ]
            for name, device in self._devices.items()
        }

    async def _spawn(self) -> None:
        self._tasks = [asyncio.create_task(device.run()) for device in self._devices.values()]

    async def _shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        # Each task disconnects its session on cancellation; wait for that to end.
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._spawn(), self._loop).result(5.0)

    def stop(self, timeout: float = 5.0) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(concurrent.futures.TimeoutError):
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)

    def poll(self, now_ms: int) -> list[TagChange]:
        del now_ms  # values carry the server's source timestamps
        return self._buffer.drain()

    def device_online(self) -> Mapping[str, bool]:
        return self._buffer.online()

    def device_errors(self) -> Mapping[str, str]:
        """Why each device is not connected ("" for a connected one)."""
        return {name: device.last_error for name, device in self._devices.items()}

    def write(self, device_id: str, name: str, value: MetricValue) -> WriteResult:
        device = self._devices.get(device_id)
        if device is None:
            return WriteResult.rejected(f"unknown device {device_id!r}")
        tag = device.tags.get(name)
        if tag is None:
            return WriteResult.rejected(f"device {device_id!r} has no tag {name!r}")
        if not tag.writable:
            return WriteResult.rejected(f"{device_id}/{name} is read-only")
        datatype = OPCUA_TYPES[tag.type]
        if isinstance(value, int | float) and not isinstance(value, bool):
            if (tag.min is not None and value < tag.min) or (
                tag.max is not None and value > tag.max
            ):
                return WriteResult.rejected(f"{name} accepts {tag.min}..{tag.max}; got {value!r}")
            low_high = INTEGER_RANGES.get(datatype)
            if low_high is not None and not low_high[0] <= value <= low_high[1]:
                return WriteResult.rejected(f"{name} ({tag.type}) cannot hold {value!r}")
        future = asyncio.run_coroutine_threadsafe(device.write(tag, value), self._loop)
        try:
            future.result(device.config.timeout_s)
        except TimeoutError:
            future.cancel()
            # The request may have reached the server and been applied: not a refusal.
            return WriteResult.unknown(
                f"no answer to the write to {device_id}/{name} within "
                f"{device.config.timeout_s:g} s; it may have been applied"
            )
        except UaStatusCodeError as exc:
            return WriteResult.rejected(f"server refused the write: {exc}")
        except Exception as exc:  # connection gone, bad variant: refused, with the reason
            return WriteResult.rejected(f"write failed: {exc}")
        return WriteResult.ok()
