"""Application Default Credentials the standard way: a service-account JSON file.

The key is generated per test run; `token_uri` points at the local OAuth emulator, so
google-auth's real JWT-bearer exchange runs against it. The public half is kept to verify
the signatures the clients send.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

PROJECT = "emulated-project"
CLIENT_EMAIL = f"gateway@{PROJECT}.iam.gserviceaccount.com"
KEY_ID = "emulator-key-1"


@dataclass(frozen=True)
class ServiceAccount:
    """A service-account key file and the public key that checks its signatures."""

    path: Path
    public_key_pem: bytes
    client_email: str = CLIENT_EMAIL
    project: str = PROJECT


def write_service_account(directory: Path, token_uri: str) -> ServiceAccount:
    """Write a `service_account` ADC file whose token endpoint is `token_uri`."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    info = {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": KEY_ID,
        "private_key": private_pem,
        "client_email": CLIENT_EMAIL,
        "client_id": "1234567890",
        "token_uri": token_uri,
        "universe_domain": "googleapis.com",
    }
    path = directory / "service-account.json"
    path.write_text(json.dumps(info))
    return ServiceAccount(path=path, public_key_pem=public_pem)
