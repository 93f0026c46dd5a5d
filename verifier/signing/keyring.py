"""The verifier's signing keys: one keyring per purpose (tokens, log checkpoints), rotated
next → active → retired, persisted owner-only, published as a JWKS.

- A *next* key is published before it signs, so relying parties that cache the JWKS already know
  it when it becomes active.
- The *active* key signs. ``rotate`` makes next active, active retired, and a fresh next.
- A *retired* key stays published until ``publish_until`` (for token keys: the rotation time plus
  the longest token lifetime, so every token it signed has expired; for log keys: for ever, since
  old checkpoints must keep verifying), then it is dropped from the JWKS and its private key
  deleted.

Keys are ECDSA P-256 (ES256 only); ``kid`` is the RFC 7638 JWK thumbprint. Private keys live in
``<dir>/<purpose>/<kid>.pem`` (PKCS#8, 0600) and are never logged or exported; the state is in
``<dir>/<purpose>/keyring.json``. Several processes share a keyring: writes take an exclusive
``flock`` and replace the state file atomically; readers reload when it changes.
"""

from __future__ import annotations

import base64
import datetime as dt
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from geoattest.errors import ConfigurationError
from geoattest.private_files import check_private, create_private_file, ensure_private_dir
from verifier.core.jwk import public_jwk, thumbprint

STATE_FILE = "keyring.json"

__all__ = [
    "KeyPurpose",
    "KeyState",
    "Keyring",
    "PublishedKey",
    "SigningKey",
    "public_jwk",
    "thumbprint",
]


class KeyPurpose(StrEnum):
    TOKENS = "tokens"  # PoR/PoG JWS
    LOG = "log"  # transparency-log checkpoints


class KeyState(StrEnum):
    NEXT = "next"
    ACTIVE = "active"
    RETIRED = "retired"


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishedKey:
    kid: str
    state: KeyState
    created_at: dt.datetime
    publish_until: dt.datetime | None  # retired keys only
    public: ec.EllipticCurvePublicKey

    def jwk(self) -> dict[str, str]:
        return {**public_jwk(self.public), "kid": self.kid, "use": "sig", "alg": "ES256"}


class SigningKey:
    """The active key: signs with ES256 (JWS's raw ``r ‖ s``, 64 bytes)."""

    def __init__(self, kid: str, private: ec.EllipticCurvePrivateKey) -> None:
        self.kid = kid
        self._private = private

    @property
    def public(self) -> ec.EllipticCurvePublicKey:
        return self._private.public_key()

    def sign(self, data: bytes) -> bytes:
        r, s = decode_dss_signature(self._private.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def __repr__(self) -> str:  # never the private key
        return f"SigningKey(kid={self.kid!r})"


class Keyring:
    """The keys of one purpose in ``directory / purpose``; created with a next and an active key."""

    def __init__(
        self, directory: Path, purpose: KeyPurpose, *, retired_lifetime: dt.timedelta | None
    ) -> None:
        """``retired_lifetime``: how long a retired key stays published (None: for ever)."""
        self.directory = directory / purpose.value
        self.purpose = purpose
        self._retired_lifetime = retired_lifetime
        self._lock = threading.Lock()
        self._loaded: tuple[float, list[_Entry]] | None = None

    # --- reading -------------------------------------------------------------------------------

    def active(self) -> SigningKey:
        entry = next(e for e in self._entries() if e.state is KeyState.ACTIVE)
        private = serialization.load_pem_private_key(self._key_path(entry.kid).read_bytes(), None)
        if not isinstance(private, ec.EllipticCurvePrivateKey):
            raise ConfigurationError(f"{self._key_path(entry.kid)} is not an EC private key")
        return SigningKey(entry.kid, private)

    def published(self, now: dt.datetime) -> list[PublishedKey]:
        """Every key a verifier of this keyring's signatures may need at ``now``."""
        return [
            PublishedKey(
                kid=e.kid,
                state=e.state,
                created_at=e.created_at,
                publish_until=e.publish_until,
                public=e.public,
            )
            for e in self._entries()
            if e.publish_until is None or e.publish_until > now
        ]

    def jwks(self, now: dt.datetime) -> dict[str, list[dict[str, str]]]:
        return {"keys": [key.jwk() for key in self.published(now)]}

    # --- changing ------------------------------------------------------------------------------

    def ensure(self, now: dt.datetime) -> None:
        """Create the keyring (an active and a next key) if it does not exist yet; check modes."""
        ensure_private_dir(self.directory)
        with self._exclusive():
            if (self.directory / STATE_FILE).exists():
                check_private(self.directory / STATE_FILE)
                return
            entries = [self._new_entry(KeyState.ACTIVE, now), self._new_entry(KeyState.NEXT, now)]
            self._write(entries)

    def rotate(self, now: dt.datetime) -> str:
        """next → active, active → retired, a fresh next; drops retired keys past their
        publication. Returns the new active kid."""
        with self._exclusive():
            entries = self._read()
            kept: list[_Entry] = []
            for entry in entries:
                if entry.state is KeyState.ACTIVE:
                    lifetime = self._retired_lifetime
                    until = None if lifetime is None else now + lifetime
                    kept.append(entry.moved(KeyState.RETIRED, publish_until=until))
                elif entry.state is KeyState.NEXT:
                    kept.append(entry.moved(KeyState.ACTIVE))
                elif entry.publish_until is not None and entry.publish_until <= now:
                    self._key_path(entry.kid).unlink(missing_ok=True)
                else:
                    kept.append(entry)
            kept.append(self._new_entry(KeyState.NEXT, now))
            self._write(kept)
            return next(e.kid for e in kept if e.state is KeyState.ACTIVE)

    # --- internals -----------------------------------------------------------------------------

    def _entries(self) -> list[_Entry]:
        path = self.directory / STATE_FILE
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError as e:
            raise ConfigurationError(
                f"no {self.purpose} keyring in {self.directory} (create it with 'geoattest "
                "verifier keys init')"
            ) from e
        with self._lock:
            if self._loaded is None or self._loaded[0] != mtime:
                self._loaded = (mtime, self._read())
            return self._loaded[1]

    def _read(self) -> list[_Entry]:
        body = json.loads((self.directory / STATE_FILE).read_text())
        return [_Entry.from_json(item) for item in body["keys"]]

    def _write(self, entries: list[_Entry]) -> None:
        body = json.dumps({"keys": [e.to_json() for e in entries]}, indent=2).encode()
        temporary = self.directory / f".{STATE_FILE}.{os.getpid()}"
        temporary.unlink(missing_ok=True)
        create_private_file(temporary, body)
        os.replace(temporary, self.directory / STATE_FILE)
        self._loaded = None

    def _new_entry(self, state: KeyState, now: dt.datetime) -> _Entry:
        private = ec.generate_private_key(ec.SECP256R1())
        kid = thumbprint(private.public_key())
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        create_private_file(self._key_path(kid), pem)
        public = private.public_key()
        return _Entry(kid=kid, state=state, created_at=now, publish_until=None, public=public)

    def _key_path(self, kid: str) -> Path:
        return self.directory / f"{kid}.pem"

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        ensure_private_dir(self.directory)
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Entry:
    kid: str
    state: KeyState
    created_at: dt.datetime
    publish_until: dt.datetime | None
    public: ec.EllipticCurvePublicKey

    def moved(self, state: KeyState, *, publish_until: dt.datetime | None = None) -> _Entry:
        return _Entry(
            kid=self.kid,
            state=state,
            created_at=self.created_at,
            publish_until=publish_until,
            public=self.public,
        )

    def to_json(self) -> dict[str, object]:
        return {
            "kid": self.kid,
            "state": self.state.value,
            "created_at": self.created_at.isoformat(),
            "publish_until": self.publish_until.isoformat() if self.publish_until else None,
            "public_jwk": public_jwk(self.public),
        }

    @classmethod
    def from_json(cls, item: dict[str, object]) -> _Entry:
        jwk = item["public_jwk"]
        assert isinstance(jwk, dict)  # noqa: S101  # written by _Entry.to_json
        public = ec.EllipticCurvePublicNumbers(
            int.from_bytes(_unb64url(str(jwk["x"])), "big"),
            int.from_bytes(_unb64url(str(jwk["y"])), "big"),
            ec.SECP256R1(),
        ).public_key()
        until = item.get("publish_until")
        return cls(
            kid=str(item["kid"]),
            state=KeyState(str(item["state"])),
            created_at=dt.datetime.fromisoformat(str(item["created_at"])),
            publish_until=dt.datetime.fromisoformat(str(until)) if until else None,
            public=public,
        )


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
