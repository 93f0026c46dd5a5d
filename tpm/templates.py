"""Public-area templates for software keys and the TCG EK template.

`ek_public` rebuilds the EK public area a TPM derives from the TCG default ("low range") EK
template, given the key from an EK certificate: its name is then the EK's TPM name.
`ak_public` and `location_key_public` give software keys the attributes `tpm.keys` requires
(for simulators and tests).
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tpm.constants import Alg, ObjectAttributes
from tpm.public import PublicKey, SymmetricDef, TpmPublic, build_public

__all__ = [
    "AK_ATTRIBUTES",
    "EK_ATTRIBUTES",
    "EK_POLICY_A_SHA256",
    "LOCATION_KEY_ATTRIBUTES",
    "ak_public",
    "ek_public",
    "location_key_public",
]

_A = ObjectAttributes
EK_POLICY_A_SHA256 = bytes.fromhex(
    "837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa"
)
"""PolicyA_SHA256 of the TCG EK Credential Profile (PolicySecret(TPM_RH_ENDORSEMENT))."""

EK_ATTRIBUTES = (
    _A.FIXED_TPM
    | _A.FIXED_PARENT
    | _A.SENSITIVE_DATA_ORIGIN
    | _A.ADMIN_WITH_POLICY
    | _A.RESTRICTED
    | _A.DECRYPT
)
AK_ATTRIBUTES = (
    _A.FIXED_TPM
    | _A.FIXED_PARENT
    | _A.SENSITIVE_DATA_ORIGIN
    | _A.USER_WITH_AUTH
    | _A.RESTRICTED
    | _A.SIGN_ENCRYPT
)
LOCATION_KEY_ATTRIBUTES = (
    _A.FIXED_TPM | _A.FIXED_PARENT | _A.SENSITIVE_DATA_ORIGIN | _A.USER_WITH_AUTH | _A.SIGN_ENCRYPT
)
_AES128_CFB = SymmetricDef(alg=Alg.AES, key_bits=128, mode=Alg.CFB)


def ek_public(key: PublicKey) -> TpmPublic:
    """The EK public area of the TCG default template (RSA-2048 or ECC P-256, AES-128-CFB,
    PolicyA_SHA256) holding ``key``. Raises ValueError for an unsupported curve."""
    return build_public(
        key,
        attributes=EK_ATTRIBUTES,
        auth_policy=EK_POLICY_A_SHA256,
        symmetric=_AES128_CFB,
    )


def ak_public(key: PublicKey, *, attributes: ObjectAttributes = AK_ATTRIBUTES) -> TpmPublic:
    """A restricted signing key public area: ECDSA-SHA256 for ECC keys, RSASSA-SHA256 for RSA."""
    scheme = Alg.ECDSA if isinstance(key, ec.EllipticCurvePublicKey) else Alg.RSASSA
    return build_public(key, attributes=attributes, scheme=scheme, scheme_hash=Alg.SHA256)


def location_key_public(
    key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    *,
    attributes: ObjectAttributes = LOCATION_KEY_ATTRIBUTES,
) -> TpmPublic:
    """An unrestricted signing key public area with ECDSA-SHA256 (RSASSA-SHA256 for RSA keys)."""
    scheme = Alg.ECDSA if isinstance(key, ec.EllipticCurvePublicKey) else Alg.RSASSA
    return build_public(key, attributes=attributes, scheme=scheme, scheme_hash=Alg.SHA256)
