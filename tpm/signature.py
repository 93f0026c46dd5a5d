"""TPMT_SIGNATURE: parse, encode, and verify with a TPM public area.

Verification uses the cryptography key already loaded on the `TpmPublic` and cached padding and
hash objects, so a check costs little more than the raw public-key operation.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from geoattest.errors import QuoteSignatureInvalid, TpmFormatError
from tpm._marshal import Reader, tpm2b, u16
from tpm.constants import HASH_ALGS, Alg, ObjectAttributes, to_alg
from tpm.public import TpmPublic

__all__ = [
    "TpmSignature",
    "encode_tpmt_signature",
    "parse_tpmt_signature",
    "verify_signature",
]

_HEAD = struct.Struct(">HH")  # sigAlg, hash (every scheme parsed here starts with both)
_SIGN_BIT = int(ObjectAttributes.SIGN_ENCRYPT)
_NULL, _ECC, _ECDSA_ALG = Alg.NULL, Alg.ECC, Alg.ECDSA
_RSA_SIGS = frozenset({Alg.RSASSA, Alg.RSAPSS})
_ECC_SIGS = frozenset({Alg.ECDSA})
_ECDSA = {alg: ec.ECDSA(h) for alg, h in HASH_ALGS.items()}
_PKCS1 = padding.PKCS1v15()
_PSS_BY_HASH = {
    alg: padding.PSS(mgf=padding.MGF1(h), salt_length=padding.PSS.AUTO)
    for alg, h in HASH_ALGS.items()
}


@dataclass(frozen=True, slots=True, kw_only=True)
class TpmSignature:
    """A parsed TPMT_SIGNATURE: RSASSA/RSAPSS carry ``rsa``; ECDSA carries ``r`` and ``s``."""

    sig_alg: Alg
    hash_alg: Alg
    rsa: bytes = b""
    r: bytes = b""
    s: bytes = b""

    @classmethod
    def ecdsa_from_der(
        cls, der: bytes, *, hash_alg: Alg = Alg.SHA256, size: int = 32
    ) -> TpmSignature:
        """An ECDSA TPMT_SIGNATURE from a DER signature (as cryptography's ``sign`` returns);
        ``size`` is the curve's coordinate size (32 for P-256)."""
        r, s = decode_dss_signature(der)
        return cls(
            sig_alg=Alg.ECDSA,
            hash_alg=hash_alg,
            r=r.to_bytes(size, "big"),
            s=s.to_bytes(size, "big"),
        )

    def to_der(self) -> bytes:
        """The DER form of an ECDSA signature; raises `QuoteSignatureInvalid` for other kinds."""
        if self.sig_alg not in _ECC_SIGS:
            raise QuoteSignatureInvalid(f"{self.sig_alg.name} signature has no DER form")
        return encode_dss_signature(int.from_bytes(self.r, "big"), int.from_bytes(self.s, "big"))


def parse_tpmt_signature(data: bytes) -> TpmSignature:
    """Parse a TPMT_SIGNATURE of scheme RSASSA, RSAPSS or ECDSA.

    Raises `TpmFormatError` on other schemes, unknown hash ids, truncation or trailing bytes.
    """
    r = Reader(data, "TPMT_SIGNATURE")
    sig_id, hash_id = _HEAD.unpack(r.take(_HEAD.size, "sigAlg, hash"))
    sig_alg = to_alg(sig_id, "sigAlg")
    if sig_alg in _RSA_SIGS:
        hash_alg = to_alg(hash_id, "signature hash")
        result = TpmSignature(sig_alg=sig_alg, hash_alg=hash_alg, rsa=r.tpm2b("sig", max_size=512))
    elif sig_alg in _ECC_SIGS:
        hash_alg = to_alg(hash_id, "signature hash")
        sig_r = r.tpm2b("signatureR", max_size=128)
        sig_s = r.tpm2b("signatureS", max_size=128)
        result = TpmSignature(sig_alg=sig_alg, hash_alg=hash_alg, r=sig_r, s=sig_s)
    else:
        raise TpmFormatError(f"TPMT_SIGNATURE: unsupported signature scheme {sig_alg.name}")
    r.expect_end()
    return result


def encode_tpmt_signature(sig: TpmSignature) -> bytes:
    """Marshal ``sig`` as a TPMT_SIGNATURE; raises ValueError for an unsupported scheme."""
    head = u16(sig.sig_alg) + u16(sig.hash_alg)
    if sig.sig_alg in _RSA_SIGS:
        return head + tpm2b(sig.rsa)
    if sig.sig_alg in _ECC_SIGS:
        return head + tpm2b(sig.r) + tpm2b(sig.s)
    raise ValueError(f"cannot encode a {sig.sig_alg.name} signature")


def verify_signature(pub: TpmPublic, message: bytes, sig: TpmSignature) -> None:
    """Verify ``sig`` over ``message`` (hashed with the signature's hash) with key ``pub``.

    Checks that ``pub`` is a signing key holding a public key, that the signature scheme fits the
    key type and, when the key fixes a scheme, that it is that scheme and hash; then verifies
    ECDSA (r, s), RSASSA-PKCS1-v1_5 or RSAPSS. Raises `QuoteSignatureInvalid` on any failure.
    """
    # Hot path: plain-int flag test and `pub.type` dispatch (IntFlag `&` and ABC isinstance
    # checks each cost about as much as the rest of this function).
    key = pub.public_key
    if key is None:
        raise QuoteSignatureInvalid(f"{pub.type.name} public area holds no usable public key")
    if not int(pub.attributes) & _SIGN_BIT:
        raise QuoteSignatureInvalid("key is not a signing key (sign attribute clear)")
    sig_alg = sig.sig_alg
    if pub.scheme is not _NULL and (
        sig_alg is not pub.scheme or sig.hash_alg is not pub.scheme_hash
    ):
        want = pub.scheme_hash.name if pub.scheme_hash is not None else "?"
        raise QuoteSignatureInvalid(
            f"signature scheme {sig_alg.name}-{sig.hash_alg.name} differs from the key's "
            f"scheme {pub.scheme.name}-{want}"
        )
    hash_obj = HASH_ALGS.get(sig.hash_alg)
    if hash_obj is None:
        raise QuoteSignatureInvalid(f"unsupported signature hash {sig.hash_alg.name}")
    try:
        if pub.type is _ECC:
            if sig_alg is not _ECDSA_ALG:
                raise QuoteSignatureInvalid(f"{sig_alg.name} signature for an ECC key")
            der = encode_dss_signature(int.from_bytes(sig.r, "big"), int.from_bytes(sig.s, "big"))
            cast(ec.EllipticCurvePublicKey, key).verify(der, message, _ECDSA[sig.hash_alg])
        else:
            rsa_key = cast(rsa.RSAPublicKey, key)
            if sig_alg is Alg.RSASSA:
                pad: padding.AsymmetricPadding = _PKCS1
            elif sig_alg is Alg.RSAPSS:
                pad = _PSS_BY_HASH[sig.hash_alg]
            else:
                raise QuoteSignatureInvalid(f"{sig_alg.name} signature for an RSA key")
            if len(sig.rsa) != (rsa_key.key_size + 7) // 8:
                raise QuoteSignatureInvalid(
                    f"RSA signature is {len(sig.rsa)} bytes, key modulus is {rsa_key.key_size} bits"
                )
            rsa_key.verify(sig.rsa, message, pad, hash_obj)
    except InvalidSignature as e:
        raise QuoteSignatureInvalid(
            f"{sig_alg.name}-{sig.hash_alg.name} signature does not verify with key "
            f"{pub.name.hex()}"
        ) from e
