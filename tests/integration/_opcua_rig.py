"""asyncua's own OPC UA server on a free port, for the tests of the OPC UA source.

``OpcUaServer`` runs the server on its own event loop thread with one object (the device) and a
variable per entry of ``VARIABLES``; it can stop and start again on the same port. With a
``ServerSecurity`` it offers only Basic256Sha256 Sign and SignAndEncrypt, accepts only the
client certificates in its trust list and only the given user names and passwords.
``make_certificate`` writes a self-signed application certificate made at test time.
"""

from __future__ import annotations

import asyncio
import datetime
import threading
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "DEVICE",
    "SERVER_URI",
    "SOURCE_TS",
    "VARIABLES",
    "OpcUaServer",
    "ServerSecurity",
    "make_certificate",
    "opcua_device",
]

DEVICE = "Filler1"
SERVER_URI = "urn:andon:test:opcua-server"
#: name -> (OPC UA variant type, initial value, configured type)
VARIABLES: dict[str, tuple[ua.VariantType, Any, str]] = {
    "Running": (ua.VariantType.Boolean, True, "boolean"),
    "State": (ua.VariantType.Int16, -3, "int16"),
    "Count": (ua.VariantType.UInt32, 4_000_000_000, "uint32"),
    "Big": (ua.VariantType.Int64, -(2**40), "int64"),
    "Temp": (ua.VariantType.Float, 21.5, "float"),
    "Setpoint": (ua.VariantType.Double, 120.25, "double"),
    "Order": (ua.VariantType.String, "PO-1", "string"),
}
SOURCE_TS = datetime.datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)


def make_certificate(directory: Path, name: str, uri: str, *, server: bool) -> tuple[Path, Path]:
    """A self-signed OPC UA application certificate (DER) and its key (PEM) in ``directory``.

    The URI goes in subjectAltName, where OPC UA peers look for the application URI.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(uri), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{name}.der", directory / f"{name}.key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.DER))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class ServerSecurity:
    certificate: Path
    private_key: Path
    #: Directory of the client certificates the server trusts.
    trusted: Path
    users: dict[str, str] = field(default_factory=dict)


class _Users:
    """asyncua's user manager interface: only the configured name and password get in."""

    def __init__(self, users: dict[str, str]) -> None:
        self._users = users

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        if username is not None and self._users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


class OpcUaServer:
    """asyncua's server on its own loop thread; ``stop``/``start`` again on the same port."""

    def __init__(
        self,
        port: int,
        *,
        security: ServerSecurity | None = None,
        variables: dict[str, tuple[ua.VariantType, Any, str]] | None = None,
    ) -> None:
        self.port = port
        self.endpoint = f"opc.tcp://127.0.0.1:{port}/andon/"
        self.security = security
        self.variables = VARIABLES if variables is None else variables
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: Server | None = None
        self.nodes: dict[str, Any] = {}

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    async def _secure(self, server: Server, security: ServerSecurity) -> None:
        await server.set_application_uri(SERVER_URI)
        server.set_security_policy(
            [
                ua.SecurityPolicyType.Basic256Sha256_Sign,
                ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
            ]
        )
        server.set_identity_tokens([ua.UserNameIdentityToken])
        await server.load_certificate(str(security.certificate))
        await server.load_private_key(str(security.private_key))
        trust = TrustStore([security.trusted], [])
        await trust.load()
        server.set_certificate_validator(
            CertificateValidator(
                CertificateValidatorOptions.TRUSTED_VALIDATION
                | CertificateValidatorOptions.PEER_CLIENT,
                trust,
            )
        )

    async def _start(self) -> None:
        security = self.security
        server = Server(user_manager=_Users(security.users) if security else None)
        await server.init()
        server.set_endpoint(self.endpoint)
        if security is not None:
            await self._secure(server, security)
        idx = await server.register_namespace("urn:andon:test")
        machine = await server.nodes.objects.add_object(idx, DEVICE)
        for name, (vtype, value, _) in self.variables.items():
            node = await machine.add_variable(
                ua.NodeId(f"{DEVICE}.{name}", idx), name, ua.Variant(value, vtype)
            )
            await node.set_writable()
            self.nodes[name] = node
        if "Temp" in self.nodes:
            await self.nodes["Temp"].write_value(
                ua.DataValue(ua.Variant(21.5, ua.VariantType.Float), SourceTimestamp=SOURCE_TS)
            )
        await server.start()
        self.server = server

    def start(self) -> None:
        self.run(self._start())

    def stop(self) -> None:
        if self.server is not None:
            self.run(self.server.stop())
            self.server = None

    def read(self, name: str) -> Any:
        return self.run(self.nodes[name].read_value())

    def write(self, name: str, value: Any, **stamps: Any) -> None:
        vtype = self.variables[name][0]
        self.run(self.nodes[name].write_value(ua.DataValue(ua.Variant(value, vtype), **stamps)))

    async def _cancel_leftovers(self) -> None:
        # The server leaves session tasks behind after stop(); end them before the loop.
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def close(self) -> None:
        self.stop()
        self.run(self._cancel_leftovers())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def opcua_device(port: int, **overrides: Any) -> dict[str, Any]:
    """The edge's ``[[opcua]]`` table for the test server's device (Setpoint and State
    writable, Setpoint within 0..200)."""
    return {
        "device": DEVICE,
        "endpoint": f"opc.tcp://127.0.0.1:{port}/andon/",
        "publishing_interval_ms": 50,
        "sampling_interval_ms": 0,
        "timeout_s": 2.0,
        "backoff_initial_s": 0.2,
        "backoff_max_s": 1.0,
        "tags": [
            {
                "name": name,
                "node": f"ns=2;s={DEVICE}.{name}",
                "type": kind,
                "writable": name in ("Setpoint", "State"),
                **({"min": 0, "max": 200} if name == "Setpoint" else {}),
            }
            for name, (_, _, kind) in VARIABLES.items()
        ],
        **overrides,
    }
