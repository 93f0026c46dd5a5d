"""TPM 2.0 constants (TPM 2.0 Library spec Part 2): algorithm ids, object attributes, curves, tags.

Also the mapping from TPM hash algorithms to hashlib / cryptography hash objects, so the rest of the
package never spells a hash algorithm twice.
"""

from __future__ import annotations

import enum
import functools
import hashlib
from collections.abc import Callable
from typing import Final

from cryptography.hazmat.primitives import hashes

from geoattest.errors import TpmFormatError
from geoattest.pcr_banks import PcrBank

__all__ = [
    "HASH_ALGS",
    "TPM_GENERATED_VALUE",
    "TPM_ST_ATTEST_CERTIFY",
    "TPM_ST_ATTEST_QUOTE",
    "Alg",
    "EccCurve",
    "ObjectAttributes",
    "St",
    "alg_bank",
    "bank_alg",
    "digest_size",
    "hash_algorithm",
    "hash_constructor",
    "hashlib_name",
    "to_alg",
    "to_curve",
]


class Alg(enum.IntEnum):
    """TPM_ALG_ID values (Part 2, §6.3)."""

    ERROR = 0x0000
    RSA = 0x0001
    TDES = 0x0003
    SHA1 = 0x0004
    HMAC = 0x0005
    AES = 0x0006
    MGF1 = 0x0007
    KEYEDHASH = 0x0008
    XOR = 0x000A
    SHA256 = 0x000B
    SHA384 = 0x000C
    SHA512 = 0x000D
    NULL = 0x0010
    SM3_256 = 0x0012
    SM4 = 0x0013
    RSASSA = 0x0014
    RSAES = 0x0015
    RSAPSS = 0x0016
    OAEP = 0x0017
    ECDSA = 0x0018
    ECDH = 0x0019
    ECDAA = 0x001A
    SM2 = 0x001B
    ECSCHNORR = 0x001C
    ECMQV = 0x001D
    KDF1_SP800_56A = 0x0020
    KDF2 = 0x0021
    KDF1_SP800_108 = 0x0022
    ECC = 0x0023
    SYMCIPHER = 0x0025
    CAMELLIA = 0x0026
    SHA3_256 = 0x0027
    SHA3_384 = 0x0028
    SHA3_512 = 0x0029
    CTR = 0x0040
    OFB = 0x0041
    CBC = 0x0042
    CFB = 0x0043
    ECB = 0x0044


class EccCurve(enum.IntEnum):
    """TPM_ECC_CURVE values (Part 2, §6.4)."""

    NONE = 0x0000
    NIST_P192 = 0x0001
    NIST_P224 = 0x0002
    NIST_P256 = 0x0003
    NIST_P384 = 0x0004
    NIST_P521 = 0x0005
    BN_P256 = 0x0010
    BN_P638 = 0x0011
    SM2_P256 = 0x0020


class ObjectAttributes(enum.IntFlag):
    """TPMA_OBJECT bits (Part 2, §8.3)."""

    FIXED_TPM = 0x00000002
    ST_CLEAR = 0x00000004
    FIXED_PARENT = 0x00000010
    SENSITIVE_DATA_ORIGIN = 0x00000020
    USER_WITH_AUTH = 0x00000040
    ADMIN_WITH_POLICY = 0x00000080
    NO_DA = 0x00000400
    ENCRYPTED_DUPLICATION = 0x00000800
    RESTRICTED = 0x00010000
    DECRYPT = 0x00020000
    SIGN_ENCRYPT = 0x00040000
    X509_SIGN = 0x00080000


class St(enum.IntEnum):
    """TPM_ST structure tags used by attestation structures (Part 2, §6.9)."""

    ATTEST_NV = 0x8014
    ATTEST_COMMAND_AUDIT = 0x8015
    ATTEST_SESSION_AUDIT = 0x8016
    ATTEST_CERTIFY = 0x8017
    ATTEST_QUOTE = 0x8018
    ATTEST_TIME = 0x8019
    ATTEST_CREATION = 0x801A
    ATTEST_NV_DIGEST = 0x801C


TPM_ST_ATTEST_QUOTE: Final = St.ATTEST_QUOTE
TPM_ST_ATTEST_CERTIFY: Final = St.ATTEST_CERTIFY
TPM_GENERATED_VALUE: Final = 0xFF544347
"""TPM_GENERATED: the magic that starts every structure a TPM signs (``\\xffTCG``)."""

HASH_ALGS: Final[dict[Alg, hashes.HashAlgorithm]] = {
    Alg.SHA1: hashes.SHA1(),  # noqa: S303 - TPM PCR bank, not a choice of ours
    Alg.SHA256: hashes.SHA256(),
    Alg.SHA384: hashes.SHA384(),
    Alg.SHA512: hashes.SHA512(),
    Alg.SHA3_256: hashes.SHA3_256(),
    Alg.SHA3_384: hashes.SHA3_384(),
    Alg.SHA3_512: hashes.SHA3_512(),
}

_HASHLIB_NAMES: Final[dict[Alg, str]] = {
    Alg.SHA1: "sha1",
    Alg.SHA256: "sha256",
    Alg.SHA384: "sha384",
    Alg.SHA512: "sha512",
    Alg.SHA3_256: "sha3_256",
    Alg.SHA3_384: "sha3_384",
    Alg.SHA3_512: "sha3_512",
}

_HASHLIB_CTORS: Final[dict[int, Callable[[], hashlib._Hash]]] = {
    alg: functools.partial(hashlib.new, name) for alg, name in _HASHLIB_NAMES.items()
}
_HASHLIB_CTORS.update(
    {
        Alg.SHA1: hashlib.sha1,
        Alg.SHA256: hashlib.sha256,
        Alg.SHA384: hashlib.sha384,
        Alg.SHA512: hashlib.sha512,
    }
)
_DIGEST_SIZES: Final[dict[int, int]] = {alg: h.digest_size for alg, h in HASH_ALGS.items()}

_BANK_ALGS: Final[dict[PcrBank, Alg]] = {
    PcrBank.SHA1: Alg.SHA1,
    PcrBank.SHA256: Alg.SHA256,
    PcrBank.SHA384: Alg.SHA384,
    PcrBank.SHA512: Alg.SHA512,
}
_ALG_BANKS: Final[dict[int, PcrBank]] = {alg: bank for bank, alg in _BANK_ALGS.items()}

_ALG_VALUES: Final[dict[int, Alg]] = {a.value: a for a in Alg}
_CURVE_VALUES: Final[dict[int, EccCurve]] = {c.value: c for c in EccCurve}


def to_alg(value: int, what: str = "algorithm") -> Alg:
    """The `Alg` for a wire value; raises `TpmFormatError` for an unknown TPM_ALG_ID."""
    alg = _ALG_VALUES.get(value)
    if alg is None:
        raise TpmFormatError(f"unknown TPM_ALG_ID 0x{value:04x} for {what}")
    return alg


def bank_alg(bank: PcrBank) -> Alg:
    """The hash algorithm (TPM_ALG_ID) of PCR bank ``bank``."""
    return _BANK_ALGS[bank]


def alg_bank(alg: int) -> PcrBank:
    """The PCR bank of hash ``alg`` (a TPML_PCR_SELECTION's hash); raises `TpmFormatError` for a
    hash that is no bank of ours (SHA3, SM3)."""
    bank = _ALG_BANKS.get(alg)
    if bank is None:
        raise TpmFormatError(f"hash algorithm 0x{alg:04x} is not a PCR bank we verify")
    return bank


def to_curve(value: int) -> EccCurve:
    """The `EccCurve` for a wire value; raises `TpmFormatError` for an unknown curve id."""
    curve = _CURVE_VALUES.get(value)
    if curve is None:
        raise TpmFormatError(f"unknown TPM_ECC_CURVE 0x{value:04x}")
    return curve


def digest_size(alg: int) -> int:
    """Digest size in bytes of hash ``alg``; raises `TpmFormatError` for an unsupported hash."""
    size = _DIGEST_SIZES.get(alg)
    if size is None:
        raise TpmFormatError(f"unsupported hash algorithm 0x{alg:04x}")
    return size


def hash_algorithm(alg: int) -> hashes.HashAlgorithm:
    """The cryptography hash object for ``alg``; raises `TpmFormatError` if unsupported."""
    try:
        return HASH_ALGS[Alg(alg)]
    except (KeyError, ValueError):
        raise TpmFormatError(f"unsupported hash algorithm 0x{alg:04x}") from None


def hash_constructor(alg: int) -> Callable[[], hashlib._Hash]:
    """The hashlib constructor (e.g. ``hashlib.sha256``) for ``alg``; raises `TpmFormatError`."""
    ctor = _HASHLIB_CTORS.get(alg)
    if ctor is None:
        raise TpmFormatError(f"unsupported hash algorithm 0x{alg:04x}")
    return ctor


def hashlib_name(alg: int) -> str:
    """The hashlib name of hash ``alg``; raises `TpmFormatError` if unsupported."""
    try:
        return _HASHLIB_NAMES[Alg(alg)]
    except (KeyError, ValueError):
        raise TpmFormatError(f"unsupported hash algorithm 0x{alg:04x}") from None
