"""TPMT_PUBLIC / TPM2B_PUBLIC: parse, encode, name, and the cryptography key inside.

A parsed `TpmPublic` keeps the exact bytes it came from (``raw``), its TPM name and the loaded
cryptography public key, so verifying many signatures with one key never re-parses or re-loads it.
Parsing is memoised on the raw bytes (the result is immutable).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from geoattest.errors import TpmFormatError
from tpm._marshal import Reader, tpm2b, u16, u32
from tpm.constants import Alg, EccCurve, ObjectAttributes, hashlib_name, to_alg, to_curve

__all__ = [
    "PublicKey",
    "SymmetricDef",
    "TpmPublic",
    "build_public",
    "encode_tpm2b_public",
    "encode_tpmt_public",
    "parse_tpm2b_public",
    "parse_tpmt_public",
    "public_key_matches",
]

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

_RSA_DEFAULT_EXPONENT = 65537
_CURVES: dict[EccCurve, ec.EllipticCurve] = {
    EccCurve.NIST_P192: ec.SECP192R1(),
    EccCurve.NIST_P224: ec.SECP224R1(),
    EccCurve.NIST_P256: ec.SECP256R1(),
    EccCurve.NIST_P384: ec.SECP384R1(),
    EccCurve.NIST_P521: ec.SECP521R1(),
}
_CURVE_IDS: dict[str, EccCurve] = {curve.name: cid for cid, curve in _CURVES.items()}
# Schemes whose TPMU_*_SCHEME details are exactly one hashAlg (TPMS_SCHEME_HASH and friends).
_HASH_SCHEMES = frozenset(
    {
        Alg.RSASSA,
        Alg.RSAPSS,
        Alg.OAEP,
        Alg.ECDSA,
        Alg.ECDH,
        Alg.ECMQV,
        Alg.SM2,
        Alg.ECSCHNORR,
        Alg.HMAC,
    }
)
_RSA_SCHEMES = frozenset({Alg.NULL, Alg.RSASSA, Alg.RSAPSS, Alg.RSAES, Alg.OAEP})
_ECC_SCHEMES = frozenset(
    {Alg.NULL, Alg.ECDSA, Alg.ECDH, Alg.ECDAA, Alg.SM2, Alg.ECSCHNORR, Alg.ECMQV}
)
_KEYEDHASH_SCHEMES = frozenset({Alg.NULL, Alg.HMAC, Alg.XOR})
_SYM_ALGS = frozenset({Alg.AES, Alg.SM4, Alg.CAMELLIA, Alg.TDES})


@dataclass(frozen=True, slots=True, kw_only=True)
class SymmetricDef:
    """TPMT_SYM_DEF_OBJECT of a storage key (e.g. AES-128-CFB for a TCG EK)."""

    alg: Alg
    key_bits: int
    mode: Alg


@dataclass(frozen=True, slots=True, kw_only=True)
class TpmPublic:
    """A parsed TPMT_PUBLIC; make it with `parse_tpmt_public`, `parse_tpm2b_public`, `build_public`.

    ``name`` is the TPM name (nameAlg u16 ‖ H_nameAlg(raw)); ``public_key`` is the loaded
    cryptography key, or None for symmetric objects, unsupported curves and empty templates.
    """

    raw: bytes
    type: Alg
    name_alg: Alg
    attributes: ObjectAttributes
    auth_policy: bytes
    symmetric: SymmetricDef | None
    scheme: Alg
    scheme_hash: Alg | None
    rsa_key_bits: int | None = None
    rsa_exponent: int | None = None
    rsa_modulus: bytes | None = None
    ecc_curve: EccCurve | None = None
    ecc_kdf: Alg | None = None
    ecc_x: bytes | None = None
    ecc_y: bytes | None = None
    unique: bytes | None = None
    name: bytes
    public_key: PublicKey | None = field(default=None, compare=False, repr=False)


def _symmetric(r: Reader) -> SymmetricDef | None:
    alg = to_alg(r.u16("symmetric.algorithm"), "symmetric.algorithm")
    if alg is Alg.NULL:
        return None
    if alg not in _SYM_ALGS:
        raise TpmFormatError(f"TPMT_PUBLIC: {alg.name} is not a symmetric object algorithm")
    key_bits = r.u16("symmetric.keyBits")
    mode = to_alg(r.u16("symmetric.mode"), "symmetric.mode")
    return SymmetricDef(alg=alg, key_bits=key_bits, mode=mode)


def _scheme(r: Reader, allowed: frozenset[Alg]) -> tuple[Alg, Alg | None]:
    scheme = to_alg(r.u16("scheme"), "scheme")
    if scheme not in allowed:
        raise TpmFormatError(f"TPMT_PUBLIC: scheme {scheme.name} not valid for this key type")
    if scheme in _HASH_SCHEMES:
        return scheme, to_alg(r.u16("scheme.hashAlg"), "scheme.hashAlg")
    if scheme is Alg.ECDAA:
        h = to_alg(r.u16("scheme.hashAlg"), "scheme.hashAlg")
        r.u16("scheme.count")
        return scheme, h
    if scheme is Alg.XOR:
        h = to_alg(r.u16("scheme.hashAlg"), "scheme.hashAlg")
        to_alg(r.u16("scheme.kdf"), "scheme.kdf")
        return scheme, h
    return scheme, None


def _rsa_key(modulus: bytes, exponent: int) -> rsa.RSAPublicKey:
    try:
        return rsa.RSAPublicNumbers(exponent, int.from_bytes(modulus, "big")).public_key()
    except ValueError as e:
        raise TpmFormatError(f"TPMT_PUBLIC: RSA public key is invalid: {e}") from e


def _ecc_key(curve: EccCurve, x: bytes, y: bytes) -> ec.EllipticCurvePublicKey | None:
    cry = _CURVES.get(curve)
    if cry is None or (not x and not y):
        return None
    size = (cry.key_size + 7) // 8
    if len(x) > size or len(y) > size:
        raise TpmFormatError(f"TPMT_PUBLIC: ECC point coordinate longer than {size} bytes")
    point = b"\x04" + x.rjust(size, b"\0") + y.rjust(size, b"\0")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(cry, point)
    except ValueError as e:
        raise TpmFormatError(f"TPMT_PUBLIC: ECC point is not on {curve.name}: {e}") from e


def parse_tpmt_public(data: bytes) -> TpmPublic:
    """Parse a TPMT_PUBLIC (RSA, ECC, KEYEDHASH or SYMCIPHER) and load its public key.

    Raises `TpmFormatError` on truncation, trailing bytes, unknown algorithm ids, a scheme invalid
    for the key type, an RSA modulus whose length is not keyBits, or an ECC point not on the curve.
    """
    return _parse_tpmt_public(bytes(data))


@functools.lru_cache(maxsize=4096)
def _parse_tpmt_public(data: bytes) -> TpmPublic:
    r = Reader(data, "TPMT_PUBLIC")
    kind = to_alg(r.u16("type"), "type")
    name_alg = to_alg(r.u16("nameAlg"), "nameAlg")
    attributes = ObjectAttributes(r.u32("objectAttributes"))
    auth_policy = r.tpm2b("authPolicy", max_size=64)
    symmetric: SymmetricDef | None = None
    key: PublicKey | None = None
    key_bits: int | None = None
    exponent: int | None = None
    modulus: bytes | None = None
    x: bytes | None = None
    y: bytes | None = None
    unique: bytes | None = None
    curve: EccCurve | None = None
    kdf: Alg | None = None
    if kind is Alg.RSA:
        symmetric = _symmetric(r)
        scheme, scheme_hash = _scheme(r, _RSA_SCHEMES)
        key_bits = r.u16("keyBits")
        exponent = r.u32("exponent") or _RSA_DEFAULT_EXPONENT
        modulus = r.tpm2b("unique.rsa", max_size=512)
        if modulus:
            if len(modulus) * 8 != key_bits:
                raise TpmFormatError(
                    f"TPMT_PUBLIC: RSA modulus is {len(modulus) * 8} bits, keyBits says {key_bits}"
                )
            key = _rsa_key(modulus, exponent)
    elif kind is Alg.ECC:
        symmetric = _symmetric(r)
        scheme, scheme_hash = _scheme(r, _ECC_SCHEMES)
        curve = to_curve(r.u16("curveID"))
        kdf = to_alg(r.u16("kdf.scheme"), "kdf.scheme")
        if kdf is not Alg.NULL:
            to_alg(r.u16("kdf.hashAlg"), "kdf.hashAlg")
        x = r.tpm2b("unique.ecc.x", max_size=128)
        y = r.tpm2b("unique.ecc.y", max_size=128)
        key = _ecc_key(curve, x, y)
    elif kind is Alg.KEYEDHASH:
        scheme, scheme_hash = _scheme(r, _KEYEDHASH_SCHEMES)
        unique = r.tpm2b("unique.keyedHash", max_size=64)
    elif kind is Alg.SYMCIPHER:
        symmetric = _symmetric(r)
        scheme, scheme_hash = Alg.NULL, None
        unique = r.tpm2b("unique.sym", max_size=64)
    else:
        raise TpmFormatError(f"TPMT_PUBLIC: unsupported object type {kind.name}")
    r.expect_end()
    name = u16(name_alg) + hashlib.new(hashlib_name(name_alg), data).digest()
    return TpmPublic(
        raw=data,
        type=kind,
        name_alg=name_alg,
        attributes=attributes,
        auth_policy=auth_policy,
        symmetric=symmetric,
        scheme=scheme,
        scheme_hash=scheme_hash,
        rsa_key_bits=key_bits,
        rsa_exponent=exponent,
        rsa_modulus=modulus,
        ecc_curve=curve,
        ecc_kdf=kdf,
        ecc_x=x,
        ecc_y=y,
        unique=unique,
        name=name,
        public_key=key,
    )


def parse_tpm2b_public(data: bytes) -> TpmPublic:
    """Parse a TPM2B_PUBLIC (u16 size ‖ TPMT_PUBLIC); raises `TpmFormatError` as
    `parse_tpmt_public` does, and when the size field disagrees with the bytes given."""
    r = Reader(data, "TPM2B_PUBLIC")
    inner = r.tpm2b("publicArea")
    r.expect_end()
    return parse_tpmt_public(inner)


def encode_tpm2b_public(pub: TpmPublic) -> bytes:
    """The TPM2B_PUBLIC bytes of ``pub`` (its raw TPMT_PUBLIC with a size prefix)."""
    return tpm2b(pub.raw)


def _encode_symmetric(symmetric: SymmetricDef | None) -> bytes:
    if symmetric is None:
        return u16(Alg.NULL)
    return u16(symmetric.alg) + u16(symmetric.key_bits) + u16(symmetric.mode)


def encode_tpmt_public(
    key: PublicKey,
    *,
    attributes: ObjectAttributes,
    name_alg: Alg = Alg.SHA256,
    auth_policy: bytes = b"",
    symmetric: SymmetricDef | None = None,
    scheme: Alg = Alg.NULL,
    scheme_hash: Alg | None = None,
) -> bytes:
    """Marshal a TPMT_PUBLIC for an RSA or NIST-curve ECC public key (ECC kdf is always NULL).

    An RSA exponent of 65537 is written as 0, as TPMs do. Raises ValueError for an unsupported
    curve, or when ``scheme_hash`` is missing for a scheme that needs one.
    """
    if scheme is not Alg.NULL and scheme_hash is None:
        raise ValueError(f"scheme {scheme.name} needs a scheme_hash")
    scheme_bytes = u16(scheme) + (u16(scheme_hash) if scheme_hash is not None else b"")
    head = u16(name_alg) + u32(attributes) + tpm2b(auth_policy)
    if isinstance(key, rsa.RSAPublicKey):
        nums = key.public_numbers()
        exponent = 0 if nums.e == _RSA_DEFAULT_EXPONENT else nums.e
        modulus = nums.n.to_bytes((key.key_size + 7) // 8, "big")
        body = _encode_symmetric(symmetric) + scheme_bytes + u16(key.key_size) + u32(exponent)
        return u16(Alg.RSA) + head + body + tpm2b(modulus)
    curve = _CURVE_IDS.get(key.curve.name)
    if curve is None:
        raise ValueError(f"curve {key.curve.name} has no TPM curve id here")
    size = (key.curve.key_size + 7) // 8
    enc = key.public_numbers()
    body = _encode_symmetric(symmetric) + scheme_bytes + u16(curve) + u16(Alg.NULL)
    point = tpm2b(enc.x.to_bytes(size, "big")) + tpm2b(enc.y.to_bytes(size, "big"))
    return u16(Alg.ECC) + head + body + point


def build_public(
    key: PublicKey,
    *,
    attributes: ObjectAttributes,
    name_alg: Alg = Alg.SHA256,
    auth_policy: bytes = b"",
    symmetric: SymmetricDef | None = None,
    scheme: Alg = Alg.NULL,
    scheme_hash: Alg | None = None,
) -> TpmPublic:
    """`encode_tpmt_public` then `parse_tpmt_public`: a `TpmPublic` for a software key."""
    return parse_tpmt_public(
        encode_tpmt_public(
            key,
            attributes=attributes,
            name_alg=name_alg,
            auth_policy=auth_policy,
            symmetric=symmetric,
            scheme=scheme,
            scheme_hash=scheme_hash,
        )
    )


def public_key_matches(pub: TpmPublic, key: object) -> bool:
    """True when ``key`` (e.g. an EK certificate's public key) is the key of public area ``pub``:
    same RSA modulus and exponent, or same curve and point. False for anything else."""
    own = pub.public_key
    if isinstance(own, rsa.RSAPublicKey) and isinstance(key, rsa.RSAPublicKey):
        return own.public_numbers() == key.public_numbers()
    if isinstance(own, ec.EllipticCurvePublicKey) and isinstance(key, ec.EllipticCurvePublicKey):
        return own.curve.name == key.curve.name and own.public_numbers() == key.public_numbers()
    return False
