"""What the registrar keeps to check an activation proof: a keyed hash of it, never the secret.

At enrolment the registrar draws the credential secret, encrypts it to the EK (MakeCredential),
computes the proof the genuine TPM will send (``wire.activation_proof(secret, request digest)``)
and keeps only

    ``HMAC-SHA256(K, "geoattest-proof-check-v1" ‖ 0x00 ‖ enrolment id ‖ 0x00 ‖ agent id ‖ 0x00 ‖
    request digest ‖ proof)``

where ``K`` is the registrar's 32-byte enrolment key, created on first start in an owner-only
file of its state directory. Neither the secret nor the proof is ever written anywhere, so a
reader of the database (a local user, a stolen backup) learns nothing that opens a challenge:
the proof carries 256 bits of entropy and cannot be recovered from its hash. The key binds
each stored check to this registrar and to the row's own enrolment id, agent id and request
digest, so a check copied into another row, or a row edited to carry another request, does not
verify.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from pathlib import Path

from geoattest.private_files import load_or_create_secret

KEY_FILE = "enrolment-proof.key"
KEY_BYTES = 32
_DOMAIN = b"geoattest-proof-check-v1\x00"

__all__ = ["KEY_FILE", "ProofChecker"]


@dataclass(frozen=True, slots=True)
class ProofChecker:
    """Seals expected activation proofs and checks presented ones under the enrolment key."""

    key: bytes = field(repr=False)

    @classmethod
    def load(cls, state_dir: Path) -> ProofChecker:
        """The checker of the key in ``state_dir/enrolment-proof.key``, created on first use.

        Raises ``ConfigurationError`` when the directory or key file is not owner-only
        (0700/0600, this user's) or the file is not a 32-byte key.
        """
        return cls(load_or_create_secret(state_dir / KEY_FILE, KEY_BYTES))

    def seal(
        self, *, enrolment_id: str, agent_id: str, request_digest: bytes, proof: bytes
    ) -> bytes:
        """The value stored for an enrolment in place of its secret."""
        message = b"\x00".join((enrolment_id.encode("ascii"), agent_id.encode("ascii"), b""))
        return hmac.new(
            self.key, _DOMAIN + message + request_digest + proof, hashlib.sha256
        ).digest()

    def matches(
        self,
        sealed: bytes,
        *,
        enrolment_id: str,
        agent_id: str,
        request_digest: bytes,
        proof: bytes,
    ) -> bool:
        """Whether ``proof`` is the proof ``sealed`` was made for (constant-time comparison)."""
        expected = self.seal(
            enrolment_id=enrolment_id, agent_id=agent_id, request_digest=request_digest, proof=proof
        )
        return hmac.compare_digest(expected, sealed)
