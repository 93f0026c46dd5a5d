"""A real log keyring for tests (owner-only files in a tmp dir) and its public keys by kid."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from verifier.signing.keyring import KeyPurpose, Keyring

NOW = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)


def log_keyring(directory: Path) -> Keyring:
    ring = Keyring(directory, KeyPurpose.LOG, retired_lifetime=None)
    ring.ensure(NOW)
    return ring


def public_keys(ring: Keyring) -> dict[str, ec.EllipticCurvePublicKey]:
    return {key.kid: key.public for key in ring.published(NOW)}
