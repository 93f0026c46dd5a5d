"""The registrar's signing key: it signs every identity record it serves (an identity statement,
``geoattest.identity_statement``), so that a verifier or an auditor holding the registrar's
public key need not trust the plain-HTTP answer that carried it.

The key is ECDSA P-256, created on first start in the registrar's owner-only state directory
(``identity-signing-key.pem``, 0600). Its public half is served at ``GET /v1/signing-key`` and
printed by ``geoattest registrar signing-key``; pin it on the verifier
(``GEOATTEST_REGISTRAR_SIGNING_KEY``) from a channel you trust, not from that route.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from geoattest.errors import ConfigurationError
from geoattest.identity_statement import (
    IdentityFacts,
    public_key_thumbprint,
    sign_statement,
    statement_body,
)
from geoattest.private_files import check_private, create_private_file, ensure_private_dir

KEY_FILE = "identity-signing-key.pem"


class RegistrarSigner:
    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key
        self.key_id = public_key_thumbprint(key.public_key())

    @classmethod
    def load(cls, state_dir: Path) -> RegistrarSigner:
        """The key in ``state_dir`` (created owner-only on first start); ``ConfigurationError``
        when the file is wider than 0600 or does not hold a P-256 key."""
        ensure_private_dir(state_dir)
        path = state_dir / KEY_FILE
        if not path.exists():
            key = ec.generate_private_key(ec.SECP256R1())
            create_private_file(
                path,
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            )
        check_private(path)
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey) or loaded.curve.name != "secp256r1":
            raise ConfigurationError(f"{path} does not hold an ECDSA P-256 private key")
        return cls(loaded)

    def public_pem(self) -> str:
        return (
            self._key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("ascii")
        )

    def sign(self, facts: IdentityFacts, now: dt.datetime) -> tuple[bytes, bytes]:
        """(statement, signature) for ``facts``, issued at ``now``."""
        body = statement_body(facts, registrar_key=self.key_id, issued_at=now)
        return body, sign_statement(body, self._key)

    def __repr__(self) -> str:  # never the private key
        return f"RegistrarSigner(key_id={self.key_id!r})"
