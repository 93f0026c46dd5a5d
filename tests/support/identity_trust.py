"""A verifier's identity trust for stacks that add their agents without a registrar: an EK CA
directory and a pinned registrar key that nothing in the stack signs with, so an identity
could only come in through checks that would fail."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.software_pki import make_ca

__all__ = ["unused_identity_trust"]


def unused_identity_trust(workdir: Path) -> dict[str, Path]:
    """``ek_ca_dir`` and ``registrar_signing_key`` settings, written under ``workdir``."""
    ca_dir = workdir / "ek-ca"
    ca_dir.mkdir(parents=True, exist_ok=True)
    (ca_dir / "ca.pem").write_bytes(make_ca("unused EK CA").pem)
    pinned = workdir / "registrar-signing-key.pem"
    pinned.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return {"ek_ca_dir": ca_dir, "registrar_signing_key": pinned}
