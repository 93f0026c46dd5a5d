"""API keys: format, generation, parsing and hashing, and the roles they carry. Pure.

A key reads ``gak_<id>_<secret>``: ``id`` is 16 hex digits (8 random bytes, stored in clear to find
the key), ``secret`` 43 base64url characters (32 random bytes). Only SHA-256 of the secret is
stored; the key is shown once, when it is created. A configured key (``GEOATTEST_API_KEY``,
``GEOATTEST_REGISTRAR_API_KEY``) that does not have this shape, so fewer than 32 bytes of entropy
or none at all, is refused at start-up.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from enum import StrEnum

from geoattest.errors import ConfigurationError

KEY_PREFIX = "gak"
SECRET_BYTES = 32
ID_BYTES = 8
_KEY = re.compile(r"^gak_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


class Role(StrEnum):
    """What a key may do; each role includes the ones before it."""

    VIEWER = "viewer"  # read
    COMPLIANCE = "compliance"  # read + export residency proofs
    ADMIN = "admin"  # policies, agents, re-admit, delete, keys

    def allows(self, needed: Role) -> bool:
        return _RANK[self] >= _RANK[needed]


_RANK = {Role.VIEWER: 0, Role.COMPLIANCE: 1, Role.ADMIN: 2}


@dataclass(frozen=True, slots=True)
class ParsedKey:
    key_id: str
    secret: bytes


@dataclass(frozen=True, slots=True)
class NewKey:
    key_id: str
    secret_sha256: bytes
    text: str  # shown once

    def __repr__(self) -> str:  # never the secret
        return f"NewKey(key_id={self.key_id!r})"


def generate_key() -> NewKey:
    key_id = os.urandom(ID_BYTES).hex()
    secret = os.urandom(SECRET_BYTES)
    text = f"{KEY_PREFIX}_{key_id}_{base64.urlsafe_b64encode(secret).rstrip(b'=').decode()}"
    return NewKey(key_id=key_id, secret_sha256=hashlib.sha256(secret).digest(), text=text)


def parse_key(text: str) -> ParsedKey | None:
    """The parts of a key, or ``None`` when ``text`` is not one (wrong shape, short secret)."""
    match = _KEY.match(text.strip())
    if match is None:
        return None
    secret = base64.urlsafe_b64decode(match.group(2) + "=")
    return ParsedKey(key_id=match.group(1), secret=secret) if len(secret) == SECRET_BYTES else None


def secret_matches(key: ParsedKey, stored_sha256: bytes) -> bool:
    return hmac.compare_digest(hashlib.sha256(key.secret).digest(), stored_sha256)


def require_key_shape(text: str | None, setting: str) -> str | None:
    """A configured key must be a whole key (32 bytes of secret); ``ConfigurationError`` if not."""
    if text is None:
        return None
    if parse_key(text) is None:
        raise ConfigurationError(
            f"{setting} is not an API key (gak_<16 hex>_<43 base64url>, 32 random bytes): create "
            "one with 'geoattest api-keys create'; an empty or short key is refused"
        )
    return text
