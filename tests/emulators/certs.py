"""A throwaway TLS identity for 127.0.0.1, made fresh by the test run (nothing is shipped)."""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class TLSIdentity:
    """A self-signed certificate for `localhost` / 127.0.0.1 and its private key (PEM)."""

    cert_pem: bytes
    key_pem: bytes
    cert_file: Path


def make_tls_identity(directory: Path) -> TLSIdentity:
    """Generate a self-signed server certificate; clients trust it via `cert_file`."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_file = directory / "emulator-ca.pem"
    cert_file.write_bytes(cert_pem)
    return TLSIdentity(cert_pem=cert_pem, key_pem=key_pem, cert_file=cert_file)


@functools.cache
def shared_tls_identity() -> TLSIdentity:
    """The one identity of this test process.

    gRPC reads `GRPC_DEFAULT_SSL_ROOTS_FILE_PATH` once per process, the first time a TLS
    channel needs default roots, so every gRPC emulator of the run must present the same
    certificate. The directory is removed when the interpreter exits.
    """
    directory = tempfile.TemporaryDirectory(prefix="gemini-sse-tls-")
    _keep.append(directory)
    return make_tls_identity(Path(directory.name))


_keep: list[tempfile.TemporaryDirectory[str]] = []
