"""JOSE as geoattest speaks it: compact JWS signed with ES256 only, P-256 JWKs with RFC 7638
thumbprints, and compact JWE with ECDH-ES+A256KW key wrapping and A256GCM content encryption.

Strict, never liberal: base64url must be canonical (no padding, no stray bits), headers are JSON
objects without duplicate members, an ES256 signature is exactly 64 bytes, a JWK is an EC P-256
point on the curve, and a JWE uses exactly the algorithms above. Anything else is
``JoseMalformed`` (or a ``False`` signature check); what a header *means* (which ``typ``, which
``kid``) is for the caller to decide.

The agent (token requests, the workload's ``cnf`` proofs), the verifier (tokens, the revocation
status document) and relying parties (token checks, key release) all use this one module.
This module is a leaf: of the project it imports only ``geoattest.errors``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from geoattest.errors import JoseMalformed

__all__ = [
    "ES256",
    "JWE_ALG",
    "JWE_ENC",
    "JoseHeader",
    "Jws",
    "b64url",
    "b64url_decode",
    "compact_json",
    "concat_kdf",
    "decrypt_ecdh_es",
    "encode_jws",
    "encrypt_ecdh_es",
    "es256_sign",
    "es256_valid",
    "json_object",
    "jwk_public_key",
    "parse_jws",
    "public_jwk",
    "thumbprint",
]

ES256 = "ES256"
JWE_ALG = "ECDH-ES+A256KW"
JWE_ENC = "A256GCM"
MAX_COMPACT_CHARS = 64 * 1024
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_HEADERS: dict[str, JoseHeader] = {}  # parsed protected headers by their encoding (tokens share)
_MAX_HEADERS = 256
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_JWE_MEMBERS = frozenset({"alg", "enc", "epk", "kid", "typ", "cty", "apu", "apv"})


# --- base64url (RFC 7515 section 2) ---------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str, what: str = "value") -> bytes:
    """Decode unpadded base64url; ``JoseMalformed`` for any other alphabet, padding, a length
    no encoder produces, or unused bits that are not zero (so one value has one encoding)."""
    extra = len(text) % 4
    if extra == 1 or "+" in text or "/" in text or "=" in text:
        raise JoseMalformed(f"{what} is not unpadded base64url")
    # The last character of a 2- or 3-character tail carries 4 or 2 unused bits: they must be 0
    # (a character outside the alphabet finds -1, which fails the test too).
    if extra and _ALPHABET.find(text[-1]) & (0x0F if extra == 2 else 0x03):
        raise JoseMalformed(f"{what} is not canonical base64url")
    try:
        # strict mode refuses anything outside the (translated) alphabet, whitespace included
        data = text.encode("ascii").translate(_TO_STANDARD) + b"==="[: -extra % 4]
        return binascii.a2b_base64(data, strict_mode=True)
    except (binascii.Error, UnicodeError) as e:
        raise JoseMalformed(f"{what} is not unpadded base64url") from e


# --- JSON objects ---------------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    found: dict[str, object] = {}
    for key, value in pairs:
        if key in found:
            raise JoseMalformed(f"duplicate member {key[:40]!r}")
        found[key] = value
    return found


def json_object(data: bytes, what: str) -> dict[str, object]:
    """A JSON object from UTF-8 bytes, duplicate members refused (``JoseMalformed``)."""
    try:
        value = json.loads(data, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are both
        raise JoseMalformed(f"{what} is not a JSON object: {e}") from e
    if not isinstance(value, dict):
        raise JoseMalformed(f"{what} is not a JSON object")
    return value


def compact_json(value: Mapping[str, object]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True).encode("ascii")


# --- JWK (RFC 7517/7518) and thumbprints (RFC 7638) -----------------------------------------------


def public_jwk(public: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The RFC 7517 members of a P-256 public key (no kid)."""
    if not isinstance(public.curve, ec.SECP256R1):
        raise JoseMalformed(f"only P-256 keys are supported, not {public.curve.name}")
    numbers = public.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url(numbers.x.to_bytes(32, "big")),
        "y": b64url(numbers.y.to_bytes(32, "big")),
    }


def jwk_public_key(members: Mapping[str, object]) -> ec.EllipticCurvePublicKey:
    """The P-256 public key a JWK describes. ``JoseMalformed`` for another key type or curve,
    coordinates that are not 32 bytes, a point not on the curve, or private members (``d``)."""
    if members.get("kty") != "EC" or members.get("crv") != "P-256":
        raise JoseMalformed("key is not an EC P-256 JWK")
    if "d" in members:
        raise JoseMalformed("a public JWK must not carry the private key")
    x, y = members.get("x"), members.get("y")
    if not isinstance(x, str) or not isinstance(y, str):
        raise JoseMalformed("JWK x and y must be base64url strings")
    xb, yb = b64url_decode(x, "JWK x"), b64url_decode(y, "JWK y")
    if len(xb) != 32 or len(yb) != 32:
        raise JoseMalformed("JWK x and y must be 32 bytes each")
    try:
        return ec.EllipticCurvePublicNumbers(
            int.from_bytes(xb, "big"), int.from_bytes(yb, "big"), ec.SECP256R1()
        ).public_key()
    except ValueError as e:  # not on the curve
        raise JoseMalformed(f"JWK is not a point on P-256: {e}") from e


def thumbprint(public: ec.EllipticCurvePublicKey) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url): the required members in lexical order."""
    members = public_jwk(public)
    canonical = compact_json({key: members[key] for key in ("crv", "kty", "x", "y")})
    return b64url(hashlib.sha256(canonical).digest())


# --- JWS (RFC 7515), ES256 only -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class JoseHeader:
    """A protected header: the members geoattest reads, and the names of all it holds."""

    alg: str
    typ: str | None = None
    kid: str | None = None
    jwk: ec.EllipticCurvePublicKey | None = None
    members: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class Jws:
    """A compact JWS split and decoded; its signature is *not* checked yet."""

    header: JoseHeader
    payload: bytes
    signing_input: bytes
    signature: bytes


def _header(data: bytes) -> JoseHeader:
    members = json_object(data, "protected header")
    alg = members.get("alg")
    if not isinstance(alg, str):
        raise JoseMalformed("protected header has no alg")
    texts: dict[str, str | None] = {}
    for name in ("typ", "kid"):
        value = members.get(name)
        if value is not None and not isinstance(value, str):
            raise JoseMalformed(f"header member {name} must be a string")
        texts[name] = value
    jwk = members.get("jwk")
    key = None
    if jwk is not None:
        if not isinstance(jwk, dict):
            raise JoseMalformed("header member jwk must be an object")
        key = jwk_public_key(jwk)
    return JoseHeader(
        alg=alg, typ=texts["typ"], kid=texts["kid"], jwk=key, members=frozenset(members)
    )


def parse_jws(token: str) -> Jws:
    """Split a compact JWS into its decoded parts. ``JoseMalformed`` for anything that is not
    three canonical base64url parts with a JSON object header naming an ``alg``."""
    if len(token) > MAX_COMPACT_CHARS:
        raise JoseMalformed(f"compact JWS longer than {MAX_COMPACT_CHARS} characters")
    parts = token.split(".")
    if len(parts) != 3:
        raise JoseMalformed(f"a compact JWS has 3 parts, this has {len(parts)}")
    head, body, signature = parts
    header = _HEADERS.get(head)
    if header is None:
        header = _header(b64url_decode(head, "protected header"))
        if len(_HEADERS) < _MAX_HEADERS:
            _HEADERS[head] = header  # frozen: safe to share; a header is a few distinct values
    return Jws(
        header=header,
        payload=b64url_decode(body, "payload"),
        signing_input=f"{head}.{body}".encode("ascii"),
        signature=b64url_decode(signature, "signature"),
    )


def encode_jws(header: Mapping[str, object], payload: bytes, sign: Callable[[bytes], bytes]) -> str:
    """``header.payload.signature``, signed by ``sign`` over the signing input (ES256: 64 raw
    bytes ``r ‖ s``, as ``es256_sign`` or ``verifier.signing.keyring.SigningKey.sign`` give)."""
    signing_input = f"{b64url(compact_json(header))}.{b64url(payload)}"
    return f"{signing_input}.{b64url(sign(signing_input.encode('ascii')))}"


def es256_sign(private: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """An ES256 signature (RFC 7518 section 3.4): ``r ‖ s``, 32 bytes each."""
    r, s = decode_dss_signature(private.sign(data, _ECDSA_SHA256))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def es256_valid(public: ec.EllipticCurvePublicKey, data: bytes, signature: bytes) -> bool:
    """Whether ``signature`` (64 bytes ``r ‖ s``) is an ES256 signature of ``data``."""
    if len(signature) != 64:
        return False
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    if not (0 < r < _P256_ORDER and 0 < s < _P256_ORDER):
        return False
    try:
        public.verify(encode_dss_signature(r, s), data, _ECDSA_SHA256)
    except InvalidSignature:
        return False
    return True


# --- JWE (RFC 7516/7518): ECDH-ES+A256KW with A256GCM ---------------------------------------------


def concat_kdf(
    shared: bytes, *, alg: str, key_bits: int, apu: bytes = b"", apv: bytes = b""
) -> bytes:
    """The Concat KDF of RFC 7518 section 4.6.2 (NIST SP 800-56A, SHA-256) over the ECDH shared
    secret: ``AlgorithmID ‖ PartyUInfo ‖ PartyVInfo ‖ SuppPubInfo`` (each datum length-prefixed,
    SuppPubInfo the key length in bits), SuppPrivInfo empty."""

    def datum(value: bytes) -> bytes:
        return len(value).to_bytes(4, "big") + value

    other = datum(alg.encode("ascii")) + datum(apu) + datum(apv) + key_bits.to_bytes(4, "big")
    out = b""
    counter = 1
    while len(out) * 8 < key_bits:
        out += hashlib.sha256(counter.to_bytes(4, "big") + shared + other).digest()
        counter += 1
    return out[: key_bits // 8]


def encrypt_ecdh_es(
    plaintext: bytes,
    recipient: ec.EllipticCurvePublicKey,
    *,
    kid: str | None = None,
    typ: str | None = None,
) -> str:
    """A compact JWE of ``plaintext`` to ``recipient``: a fresh content key (A256GCM) wrapped with
    AES key wrap under the Concat-KDF output of ECDH between an ephemeral key and the recipient."""
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    header: dict[str, object] = {
        "alg": JWE_ALG,
        "enc": JWE_ENC,
        "epk": public_jwk(ephemeral.public_key()),
    }
    if kid is not None:
        header["kid"] = kid
    if typ is not None:
        header["typ"] = typ
    kek = concat_kdf(ephemeral.exchange(ec.ECDH(), recipient), alg=JWE_ALG, key_bits=256)
    cek, iv = os.urandom(32), os.urandom(12)
    protected = b64url(compact_json(header))
    sealed = AESGCM(cek).encrypt(iv, plaintext, protected.encode("ascii"))
    parts = (aes_key_wrap(kek, cek), iv, sealed[:-16], sealed[-16:])
    return protected + "." + ".".join(b64url(part) for part in parts)


def decrypt_ecdh_es(token: str, private: ec.EllipticCurvePrivateKey) -> bytes:
    """The plaintext of a compact JWE made by ``encrypt_ecdh_es`` (or any library using the
    same algorithms). ``JoseMalformed`` for other algorithms, compression, critical members, an
    ephemeral key off the curve, a key that does not unwrap, or a tag that does not verify."""
    if len(token) > MAX_COMPACT_CHARS * 16:
        raise JoseMalformed("compact JWE too long")
    parts = token.split(".")
    if len(parts) != 5:
        raise JoseMalformed(f"a compact JWE has 5 parts, this has {len(parts)}")
    protected, wrapped, iv, ciphertext, tag = parts
    header = json_object(b64url_decode(protected, "JWE header"), "JWE header")
    if header.get("alg") != JWE_ALG or header.get("enc") != JWE_ENC:
        raise JoseMalformed(f"JWE must use alg {JWE_ALG} and enc {JWE_ENC}")
    unknown = set(header) - _JWE_MEMBERS
    if unknown:
        raise JoseMalformed(f"JWE header members not understood: {sorted(unknown)}")
    epk = header.get("epk")
    if not isinstance(epk, dict):
        raise JoseMalformed("JWE header has no epk")
    apu, apv = (_optional_b64(header, name) for name in ("apu", "apv"))
    shared = private.exchange(ec.ECDH(), jwk_public_key(epk))
    kek = concat_kdf(shared, alg=JWE_ALG, key_bits=256, apu=apu, apv=apv)
    try:
        cek = aes_key_unwrap(kek, b64url_decode(wrapped, "JWE encrypted key"))
        if len(cek) != 32:
            raise JoseMalformed("JWE content key is not 256 bits")
        nonce = b64url_decode(iv, "JWE iv")
        if len(nonce) != 12:
            raise JoseMalformed("JWE iv is not 96 bits")
        body = b64url_decode(ciphertext, "JWE ciphertext") + b64url_decode(tag, "JWE tag")
        return AESGCM(cek).decrypt(nonce, body, protected.encode("ascii"))
    except (InvalidUnwrap, InvalidTag, ValueError) as e:
        raise JoseMalformed("JWE does not decrypt with this key") from e


def _optional_b64(header: Mapping[str, object], name: str) -> bytes:
    value = header.get(name)
    if value is None:
        return b""
    if not isinstance(value, str):
        raise JoseMalformed(f"JWE header member {name} must be a string")
    return b64url_decode(value, f"JWE {name}")
