"""Attribute policies for the three keys geoattest trusts: the EK, the AK and the location key.

Each check reads only the public area and raises the error of its key's role with the first rule
that fails, so the message says exactly which attribute is wrong.
"""

from __future__ import annotations

from geoattest.errors import AkInvalid, EkMismatch, GeoattestError, LocationKeyInvalid
from tpm.constants import Alg, EccCurve, ObjectAttributes
from tpm.public import TpmPublic

__all__ = ["check_ak_attributes", "check_ek_attributes", "check_location_key_attributes"]

_A = ObjectAttributes
_KEY_IN_TPM = _A.FIXED_TPM | _A.FIXED_PARENT | _A.SENSITIVE_DATA_ORIGIN


def _require(
    pub: TpmPublic, error: type[GeoattestError], role: str, needed: ObjectAttributes
) -> None:
    missing = needed & ~pub.attributes
    if missing:
        names = ", ".join(flag.name or hex(flag) for flag in _A if flag in missing)
        raise error(f"{role} attributes lack {names} (objectAttributes 0x{pub.attributes:08x})")


def _forbid(
    pub: TpmPublic, error: type[GeoattestError], role: str, forbidden: ObjectAttributes
) -> None:
    present = forbidden & pub.attributes
    if present:
        names = ", ".join(flag.name or hex(flag) for flag in _A if flag in present)
        raise error(
            f"{role} attributes must not set {names} (objectAttributes 0x{pub.attributes:08x})"
        )


def _signing_scheme(pub: TpmPublic, error: type[GeoattestError], role: str) -> None:
    if pub.type is Alg.ECC:
        if pub.ecc_curve is not EccCurve.NIST_P256:
            curve = pub.ecc_curve.name if pub.ecc_curve is not None else "none"
            raise error(f"{role} must be ECC NIST_P256, got curve {curve}")
        expected = Alg.ECDSA
    elif pub.type is Alg.RSA:
        if pub.rsa_key_bits != 2048:
            raise error(f"{role} must be RSA-2048, got RSA-{pub.rsa_key_bits}")
        expected = Alg.RSASSA
    else:
        raise error(f"{role} must be an RSA or ECC key, got {pub.type.name}")
    if pub.scheme is not expected or pub.scheme_hash is not Alg.SHA256:
        hash_name = pub.scheme_hash.name if pub.scheme_hash is not None else "none"
        raise error(
            f"{role} scheme must be {expected.name}-SHA256, got {pub.scheme.name}-{hash_name}"
        )
    if pub.public_key is None:
        raise error(f"{role} public area carries no public key")


def check_ak_attributes(pub: TpmPublic) -> None:
    """Check that ``pub`` is a usable attestation key.

    Requires: nameAlg SHA256; restricted signing key, not a decryption key; fixedTPM, fixedParent,
    sensitiveDataOrigin; ECC P-256 with ECDSA-SHA256 or RSA-2048 with RSASSA-SHA256.
    Raises `AkInvalid` naming the first rule that fails.
    """
    role = "AK"
    if pub.name_alg is not Alg.SHA256:
        raise AkInvalid(f"AK nameAlg must be SHA256, got {pub.name_alg.name}")
    _require(pub, AkInvalid, role, _A.RESTRICTED | _A.SIGN_ENCRYPT | _KEY_IN_TPM)
    _forbid(pub, AkInvalid, role, _A.DECRYPT)
    _signing_scheme(pub, AkInvalid, role)


def check_location_key_attributes(pub: TpmPublic) -> None:
    """Check that ``pub`` is a TPM-resident key fit to sign location evidence.

    Requires: nameAlg SHA256; an unrestricted signing key (it signs data the TPM did not generate),
    not a decryption key; fixedTPM, fixedParent, sensitiveDataOrigin; ECC P-256 with ECDSA-SHA256.
    Raises `LocationKeyInvalid` naming the first rule that fails.
    """
    role = "location key"
    if pub.name_alg is not Alg.SHA256:
        raise LocationKeyInvalid(f"location key nameAlg must be SHA256, got {pub.name_alg.name}")
    _require(pub, LocationKeyInvalid, role, _A.SIGN_ENCRYPT | _KEY_IN_TPM)
    _forbid(pub, LocationKeyInvalid, role, _A.RESTRICTED | _A.DECRYPT)
    if pub.type is not Alg.ECC:
        raise LocationKeyInvalid(f"location key must be ECC NIST_P256, got {pub.type.name}")
    _signing_scheme(pub, LocationKeyInvalid, role)


def check_ek_attributes(pub: TpmPublic) -> None:
    """Check that ``pub`` has the shape of a TCG endorsement key.

    Requires: RSA or ECC; restricted decryption (storage) key that cannot sign; fixedTPM and
    fixedParent; a symmetric definition (AES-CFB in the TCG templates); a public key present.
    Raises `EkMismatch` naming the first rule that fails.
    """
    role = "EK"
    if pub.type not in (Alg.RSA, Alg.ECC):
        raise EkMismatch(f"EK must be an RSA or ECC key, got {pub.type.name}")
    _require(pub, EkMismatch, role, _A.RESTRICTED | _A.DECRYPT | _A.FIXED_TPM | _A.FIXED_PARENT)
    _forbid(pub, EkMismatch, role, _A.SIGN_ENCRYPT)
    if (
        pub.symmetric is None
        or pub.symmetric.alg is not Alg.AES
        or pub.symmetric.mode is not Alg.CFB
        or pub.symmetric.key_bits not in (128, 192, 256)
    ):
        raise EkMismatch(f"EK symmetric must be AES-128/192/256-CFB, got {pub.symmetric}")
    if pub.public_key is None:
        raise EkMismatch("EK public area carries no public key")
