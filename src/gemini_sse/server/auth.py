"""Who is calling: API keys, kept as hashes, checked in constant time.

A key is never stored, logged or counted under its own name. The gateway keeps the
SHA-256 of each key and names its holder by a key id, the first 8 hex digits of that
hash: operators find a key's id with `printf %s "$KEY" | sha256sum | cut -c1-8`.

Keys come only in `Authorization: Bearer <key>` (RFC 6750 section 2.1). Query strings
end up in access logs, proxy logs and browser history, so a key there is never read.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from .._exceptions import RequestRejected
from .._models import ErrorCode
from .settings import Settings

KEY_ID_CHARS = 8


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request counts against: an API key's id, or the client's address without keys."""

    id: str
    key_id: str | None = None


def key_id(key: str) -> str:
    """The public name of a key: the start of its SHA-256, in hex."""
    return hashlib.sha256(key.encode()).hexdigest()[:KEY_ID_CHARS]


def read_keys_file(text: str) -> list[str]:
    """Keys from a file: one a line; blank lines and `#` comment lines are skipped."""
    keys = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keys.append(stripped)
    return keys


def bearer_token(authorization: str | None) -> str | None:
    """The credentials of an `Authorization: Bearer ...` header (scheme case-insensitive)."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def unauthorized(message: str) -> RequestRejected:
    """401 `unauthorized`; the error response adds `WWW-Authenticate: Bearer`."""
    return RequestRejected.of(401, ErrorCode.UNAUTHORIZED, message)


class KeyRing:
    """The API keys the gateway accepts, as SHA-256 digests."""

    def __init__(self, keys: Iterable[str]) -> None:
        digests: dict[bytes, str] = {}
        for key in keys:
            digest = hashlib.sha256(key.encode()).digest()
            digests[digest] = digest.hex()[:KEY_ID_CHARS]
        if len(set(digests.values())) != len(digests):
            raise ValueError("Two API keys share a key id; replace one of them.")
        self._digests = list(digests.items())

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        """`GEMINI_SSE_API_KEYS` and the lines of `GEMINI_SSE_API_KEYS_FILE`, together."""
        keys = [k.get_secret_value() for k in settings.api_keys]
        if settings.api_keys_file is not None:
            from_file = read_keys_file(settings.api_keys_file.read_text(encoding="utf-8"))
            if not from_file:
                # Fail closed: an empty file must not quietly turn authentication off.
                raise ValueError(f"GEMINI_SSE_API_KEYS_FILE {settings.api_keys_file} has no keys.")
            keys += from_file
        return cls(keys)

    def __len__(self) -> int:
        return len(self._digests)

    def identify(self, key: str) -> str | None:
        """The key id of `key`, or None if it is not one of ours.

        Every stored digest is compared, with `hmac.compare_digest` and no early exit, so
        the time taken says nothing about which key, or how much of one, matched.
        """
        presented = hashlib.sha256(key.encode()).digest()
        found: str | None = None
        for digest, id_ in self._digests:
            if hmac.compare_digest(presented, digest):
                found = id_
        return found

    def authenticate(self, authorization: str | None) -> str:
        """The key id behind an `Authorization` header; raise 401 if there is none."""
        token = bearer_token(authorization)
        if token is None:
            raise unauthorized(
                "An API key is required: send `Authorization: Bearer <key>`. Browsers "
                "(EventSource cannot send headers) POST /v1/streams with the key, then "
                "read the returned events_url."
            )
        found = self.identify(token)
        if found is None:
            raise unauthorized("The API key is not valid.")
        return found


def secret_matches(given: str | None, expected: str) -> bool:
    """Whether a bearer token equals one expected secret, compared in constant time."""
    token = bearer_token(given)
    if token is None:
        return False
    return hmac.compare_digest(
        hashlib.sha256(token.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )
