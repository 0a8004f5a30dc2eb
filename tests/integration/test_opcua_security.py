"""The OPC UA source against a secured asyncua server: certificates and user/password.

The server offers only Basic256Sha256 with Sign or SignAndEncrypt, trusts one client
certificate and knows one user; all certificates are made at test time. The source connects in
both modes, reads and writes. A wrong password, a client certificate the server does not trust
and a pinned server certificate that is not the server's each leave the device offline with a
clear reason (``device_errors``, one log line), the source retrying and stopping promptly: no
hang, no crash.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _opcua_rig import DEVICE, OpcUaServer, ServerSecurity, make_certificate, opcua_device
from _sandf_rig import wait_for

from andon.edge.sources.base import TagChange
from andon.edge.sources.config import OpcUaDeviceConfig
from andon.edge.sources.opcua import OpcUaSource
from andon.testing.ports import free_port

pytestmark = pytest.mark.integration

USER, PASSWORD = "edge", "correct-horse-battery"
CLIENT_URI = "urn:andon:test:edge"


@dataclass(frozen=True)
class Certificates:
    server: tuple[Path, Path]
    client: tuple[Path, Path]
    stranger: tuple[Path, Path]  # a client certificate the server does not trust


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    directory = tmp_path_factory.mktemp("pki")
    client = make_certificate(directory, "client", CLIENT_URI, server=False)
    trusted = directory / "trusted"
    trusted.mkdir()
    (trusted / "client.der").write_bytes(client[0].read_bytes())
    return Certificates(
        server=make_certificate(directory, "server", "urn:andon:test:opcua-server", server=True),
        client=client,
        stranger=make_certificate(directory, "stranger", CLIENT_URI, server=False),
    )


@pytest.fixture
def secured_server(certificates: Certificates) -> Iterator[OpcUaServer]:
    certificate, key = certificates.server
    security = ServerSecurity(
        certificate, key, certificates.client[0].parent / "trusted", users={USER: PASSWORD}
    )
    server = OpcUaServer(free_port(), security=security)
    server.start()
    try:
        yield server
    finally:
        server.close()


def _source(server: OpcUaServer, client: tuple[Path, Path], **overrides: Any) -> OpcUaSource:
    secured: dict[str, Any] = {
        "security_policy": "Basic256Sha256",
        "security_mode": "SignAndEncrypt",
        "certificate": client[0],
        "private_key": client[1],
        "username": USER,
        "password": PASSWORD,
    }
    config = opcua_device(server.port, **{**secured, **overrides})
    source = OpcUaSource([OpcUaDeviceConfig.model_validate(config)])
    source.start()
    return source


def _stop_promptly(source: OpcUaSource) -> None:
    started = time.monotonic()
    source.stop(5.0)
    assert time.monotonic() - started < 6.0, "the source hung on stop"


@pytest.mark.parametrize("mode", ["Sign", "SignAndEncrypt"])
def test_the_source_reads_and_writes_over_a_secured_session(
    secured_server: OpcUaServer, certificates: Certificates, mode: str
) -> None:
    source = _source(secured_server, certificates.client, security_mode=mode)
    try:
        seen: dict[str, TagChange] = {}

        def values() -> dict[str, TagChange]:
            seen.update({c.name: c for c in source.poll(0)})
            return seen if source.device_online().get(DEVICE) and "Setpoint" in seen else {}

        wait_for(values, lambda: f"no values over {mode}: {source.device_errors()}")
        assert seen["Setpoint"].value == 120.25
        assert seen["Order"].value == "PO-1"
        assert source.device_errors() == {DEVICE: ""}
        assert source.write(DEVICE, "Setpoint", 99.0).accepted
        assert secured_server.read("Setpoint") == 99.0
        wait_for(
            lambda: any(c.name == "Setpoint" and c.value == 99.0 for c in source.poll(0)),
            "the written value did not come back",
        )
    finally:
        _stop_promptly(source)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("wrong password", "BadUserAccessDenied"),
        ("untrusted certificate", "BadCertificateUntrusted"),
        ("pinned certificate of another server", "is server_certificate the certificate"),
    ],
)
def test_a_refused_connection_gives_a_clear_reason_and_no_hang(
    secured_server: OpcUaServer,
    certificates: Certificates,
    caplog: pytest.LogCaptureFixture,
    case: str,
    reason: str,
) -> None:
    overrides: dict[str, Any] = {}
    client = certificates.client
    if case == "wrong password":
        overrides["password"] = "not-the-password"
    elif case == "untrusted certificate":
        client = certificates.stranger
    else:
        overrides["server_certificate"] = certificates.stranger[0]
    caplog.set_level("WARNING", logger="andon.edge.sources.opcua")
    source = _source(secured_server, client, **overrides)
    try:
        error = wait_for(lambda: source.device_errors()[DEVICE], f"no reason given for the {case}")
        assert reason in error
        assert source.device_online() == {DEVICE: False}
        assert source.poll(0) == []
        assert source.write(DEVICE, "Setpoint", 1.0).accepted is False
        lines = [
            r.getMessage()
            for r in caplog.records
            if r.name == "andon.edge.sources.opcua" and reason in r.getMessage()
        ]
        assert lines, caplog.text
        assert lines[0].startswith(f"opc ua device {DEVICE} (opc.tcp://127.0.0.1:")
        assert PASSWORD not in caplog.text  # passwords are never logged
        assert "not-the-password" not in caplog.text
    finally:
        _stop_promptly(source)
    assert secured_server.read("Setpoint") == 120.25  # nothing was written
