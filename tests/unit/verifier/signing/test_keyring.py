"""The signing keyring: thumbprints, ES256 signatures, rotation and publication, on real files."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from geoattest.errors import ConfigurationError
from verifier.signing.keyring import KeyPurpose, Keyring, KeyState, public_jwk, thumbprint

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def _keyring(tmp_path: Path, lifetime: dt.timedelta | None = dt.timedelta(hours=1)) -> Keyring:
    ring = Keyring(tmp_path / "keys", KeyPurpose.TOKENS, retired_lifetime=lifetime)
    ring.ensure(NOW)
    return ring


def test_rfc7638_thumbprint_known_answer() -> None:
    """RFC 7638 section 3.1's method on the P-256 key of RFC 7515 appendix A.3."""
    x = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"
    y = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
    import base64

    def number(text: str) -> int:
        return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")

    public = ec.EllipticCurvePublicNumbers(number(x), number(y), ec.SECP256R1()).public_key()
    assert public_jwk(public) == {"kty": "EC", "crv": "P-256", "x": x, "y": y}
    # base64url(sha256 of the hand-written string {"crv":"P-256","kty":"EC","x":…,"y":…})
    assert thumbprint(public) == "oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U"


def test_the_active_key_signs_es256_that_its_published_key_verifies(tmp_path: Path) -> None:
    ring = _keyring(tmp_path)
    key = ring.active()
    signature = key.sign(b"payload")
    assert len(signature) == 64
    published = {k.kid: k for k in ring.published(NOW)}
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    published[key.kid].public.verify(
        encode_dss_signature(r, s), b"payload", ec.ECDSA(hashes.SHA256())
    )
    with pytest.raises(InvalidSignature):
        published[key.kid].public.verify(
            encode_dss_signature(r, s), b"other", ec.ECDSA(hashes.SHA256())
        )


def test_the_next_key_is_published_before_it_signs(tmp_path: Path) -> None:
    ring = _keyring(tmp_path)
    states = {k.state: k.kid for k in ring.published(NOW)}
    assert set(states) == {KeyState.ACTIVE, KeyState.NEXT}
    new_active = ring.rotate(NOW)
    assert new_active == states[KeyState.NEXT]
    assert ring.active().kid == new_active


def test_a_retired_key_stays_published_until_its_tokens_expired(tmp_path: Path) -> None:
    ring = _keyring(tmp_path, lifetime=dt.timedelta(minutes=10))
    old = ring.active().kid
    ring.rotate(NOW)
    assert old in {k.kid for k in ring.published(NOW + dt.timedelta(minutes=9))}
    assert old not in {k.kid for k in ring.published(NOW + dt.timedelta(minutes=11))}
    ring.rotate(NOW + dt.timedelta(minutes=11))  # dropped for good, private key deleted
    assert not (ring.directory / f"{old}.pem").exists()


def test_log_keys_stay_published_for_ever(tmp_path: Path) -> None:
    ring = Keyring(tmp_path / "keys", KeyPurpose.LOG, retired_lifetime=None)
    ring.ensure(NOW)
    old = ring.active().kid
    ring.rotate(NOW)
    assert old in {k.kid for k in ring.published(NOW + dt.timedelta(days=3650))}


def test_private_keys_are_owner_only_and_a_wider_keyring_is_refused(tmp_path: Path) -> None:
    ring = _keyring(tmp_path)
    for path in ring.directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    (ring.directory / "keyring.json").chmod(0o644)
    with pytest.raises(ConfigurationError, match="chmod"):
        ring.ensure(NOW)


def test_the_signing_key_never_shows_its_private_part(tmp_path: Path) -> None:
    key = _keyring(tmp_path).active()
    assert repr(key) == f"SigningKey(kid={key.kid!r})"
