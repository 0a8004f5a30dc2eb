"""The OPC UA source without a server: a write the server does not answer in time is reported
as "outcome unknown" (it may have been applied), never as refused; and encryption without the
server's certificate is warned about (it trusts whoever answers)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from andon.edge.sources.base import OUTCOME_UNKNOWN
from andon.edge.sources.config import OpcUaDeviceConfig, OpcUaTagConfig
from andon.edge.sources.opcua import OpcUaSource


def _config(**options: object) -> OpcUaDeviceConfig:
    tag = OpcUaTagConfig(name="Speed", node="ns=2;s=Speed", type="double", writable=True)
    return OpcUaDeviceConfig(
        device="Filler1", endpoint="opc.tcp://127.0.0.1:4840/andon", tags=[tag], **options
    )


@pytest.fixture
def unanswering() -> Iterator[OpcUaSource]:
    """A source whose device takes every write and never answers it."""
    source = OpcUaSource([_config(timeout_s=0.05)])
    stuck = asyncio.Event()
    written: list[float] = []

    async def write_without_answer(tag: OpcUaTagConfig, value: float) -> None:
        written.append(value)
        await stuck.wait()  # sent; the server's answer never comes

    device = source._devices["Filler1"]  # no server to connect to: only its write is used
    device.write = write_without_answer  # type: ignore[method-assign]
    source._thread.start()  # the source's own event loop, without the connecting tasks
    yield source
    source.stop()


def test_a_write_without_an_answer_is_unknown_not_refused(
    unanswering: OpcUaSource,
) -> None:
    source = unanswering
    result = source.write("Filler1", "Speed", 42.0)
    assert not result.accepted
    assert result.reason.startswith(f"{OUTCOME_UNKNOWN}: ")
    assert "may have been applied" in result.reason


def test_a_refused_write_is_still_refused(
    unanswering: OpcUaSource,
) -> None:
    source = unanswering
    result = source.write("Filler1", "Nope", 1.0)
    assert not result.accepted
    assert OUTCOME_UNKNOWN not in result.reason


def test_encryption_without_the_servers_certificate_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    certificate, key, server = (tmp_path / n for n in ("client.der", "client.pem", "server.der"))
    for path in (certificate, key, server):
        path.write_bytes(b"x")  # the configuration checks that the files exist
    caplog.set_level(logging.WARNING, logger="andon.edge.sources.opcua")
    secured = {
        "security_policy": "Basic256Sha256",
        "security_mode": "SignAndEncrypt",
        "certificate": certificate,
        "private_key": key,
    }
    OpcUaSource([_config(**secured)])
    assert "SignAndEncrypt without server_certificate trusts any server" in caplog.text
    caplog.clear()
    OpcUaSource([_config(**secured, server_certificate=server)])
    OpcUaSource([_config()])
    assert "trusts any server" not in caplog.text
