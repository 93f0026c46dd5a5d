"""MakeCredential in software (TPM 2.0 Part 1, §24 "Credential Protection").

The registrar wraps a secret so that only the TPM holding the EK private key, and only for an
object (the AK) with the given name, can recover it with TPM2_ActivateCredential:

- seed: RSA EK → random seed, RSA-OAEP(nameAlg) with label "IDENTITY\\0";
  ECC EK → ephemeral ECDH, seed = KDFe(nameAlg, Z, "IDENTITY\\0", ephemeral x, EK x).
- symKey = KDFa(nameAlg, seed, "STORAGE", name, "", EK symmetric keyBits);
  encIdentity = AES-CFB(symKey, IV = 0) over TPM2B_DIGEST(secret).
- hmacKey = KDFa(nameAlg, seed, "INTEGRITY", "", "", digest bits);
  outerHMAC = HMAC(hmacKey, encIdentity ‖ name).
- TPM2B_ID_OBJECT = size ‖ TPM2B_DIGEST(outerHMAC) ‖ encIdentity;
  TPM2B_ENCRYPTED_SECRET = size ‖ encrypted seed (RSA) or ephemeral point (ECC).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

try:  # AES-CFB is "decrepit" from cryptography 47 on; the TPM spec mandates it here.
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:  # pragma: no cover - cryptography < 47
    from cryptography.hazmat.primitives.ciphers.modes import CFB

from geoattest.errors import AkInvalid, EkMismatch
from tpm._marshal import tpm2b, u32
from tpm.constants import Alg, ObjectAttributes, digest_size, hash_algorithm, hashlib_name
from tpm.public import TpmPublic

__all__ = ["CredentialChallenge", "kdfa", "kdfe", "make_credential"]

_IDENTITY = b"IDENTITY\0"


@dataclass(frozen=True, slots=True, kw_only=True)
class CredentialChallenge:
    """MakeCredential output, marshalled as ESAPI.activate_credential takes it after unmarshal."""

    credential_blob: bytes  # TPM2B_ID_OBJECT
    encrypted_secret: bytes  # TPM2B_ENCRYPTED_SECRET


def kdfa(
    hash_alg: int, key: bytes, label: bytes, context_u: bytes, context_v: bytes, bits: int
) -> bytes:
    """KDFa (SP 800-108 counter mode with HMAC; Part 1, §11.4.10.2): ``bits`` of key material.

    The label is followed by one zero octet (not doubled if it already ends with one).
    """
    name = hashlib_name(hash_alg)
    if not label.endswith(b"\0"):
        label += b"\0"
    fixed = label + context_u + context_v + u32(bits)
    out = b""
    counter = 1
    while len(out) * 8 < bits:
        out += hmac.new(key, u32(counter) + fixed, name).digest()
        counter += 1
    return out[: (bits + 7) // 8]


def kdfe(hash_alg: int, z: bytes, label: bytes, party_u: bytes, party_v: bytes, bits: int) -> bytes:
    """KDFe (SP 800-56A concatenation KDF; Part 1, §11.4.10.3): ``bits`` of key material.

    The label is followed by one zero octet (not doubled if it already ends with one).
    """
    name = hashlib_name(hash_alg)
    if not label.endswith(b"\0"):
        label += b"\0"
    other = label + party_u + party_v
    out = b""
    counter = 1
    while len(out) * 8 < bits:
        out += hashlib.new(name, u32(counter) + z + other).digest()
        counter += 1
    return out[: (bits + 7) // 8]


def _rsa_seed(
    key: rsa.RSAPublicKey, name_alg: Alg, rng: Callable[[int], bytes]
) -> tuple[bytes, bytes]:
    seed = rng(digest_size(name_alg))
    h = hash_algorithm(name_alg)
    pad = padding.OAEP(mgf=padding.MGF1(h), algorithm=h, label=_IDENTITY)
    return seed, key.encrypt(seed, pad)


def _ecc_seed(
    key: ec.EllipticCurvePublicKey, name_alg: Alg, rng: Callable[[int], bytes]
) -> tuple[bytes, bytes]:
    size = (key.curve.key_size + 7) // 8
    # Ephemeral scalar from rng (extra 8 bytes make the reduction bias negligible).
    order = _CURVE_ORDERS[key.curve.name]
    scalar = int.from_bytes(rng(size + 8), "big") % (order - 1) + 1
    eph = ec.derive_private_key(scalar, key.curve)
    eph_nums = eph.public_key().public_numbers()
    ex, ey = eph_nums.x.to_bytes(size, "big"), eph_nums.y.to_bytes(size, "big")
    z = eph.exchange(ec.ECDH(), key)
    ek_x = key.public_numbers().x.to_bytes(size, "big")
    seed = kdfe(name_alg, z, _IDENTITY, ex, ek_x, 8 * digest_size(name_alg))
    return seed, tpm2b(ex) + tpm2b(ey)  # TPMS_ECC_POINT


_CURVE_ORDERS = {
    "secp256r1": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "secp384r1": int(
        "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf"
        "581a0db248b0a77aecec196accc52973",
        16,
    ),
}


def make_credential(
    ek: TpmPublic,
    object_name: bytes,
    secret: bytes,
    *,
    rng: Callable[[int], bytes] = os.urandom,
) -> CredentialChallenge:
    """Wrap ``secret`` for TPM2_ActivateCredential by the TPM holding ``ek``, bound to the object
    named ``object_name`` (the AK's TPM name).

    Raises `EkMismatch` when ``ek`` is not a restricted decryption key with an AES-CFB symmetric
    definition and an RSA or NIST P-256/P-384 public key; `AkInvalid` when ``object_name`` is not
    nameAlg ‖ digest of that size; ValueError when ``secret`` is empty or longer than the EK
    nameAlg's digest.
    """
    need = ObjectAttributes.RESTRICTED | ObjectAttributes.DECRYPT
    if ek.attributes & need != need:
        raise EkMismatch("EK for MakeCredential must be a restricted decryption key")
    sym = ek.symmetric
    if sym is None or sym.alg is not Alg.AES or sym.mode is not Alg.CFB:
        raise EkMismatch(f"EK symmetric must be AES-CFB for MakeCredential, got {sym}")
    if len(object_name) < 2:
        raise AkInvalid(f"object name of {len(object_name)} bytes is too short")
    name_hash = int.from_bytes(object_name[:2], "big")
    if len(object_name) != 2 + digest_size(name_hash):
        raise AkInvalid(f"object name {object_name.hex()} is not nameAlg ‖ digest")
    dsize = digest_size(ek.name_alg)
    if not 0 < len(secret) <= dsize:
        raise ValueError(f"credential secret must be 1..{dsize} bytes, got {len(secret)}")

    key = ek.public_key
    if isinstance(key, rsa.RSAPublicKey):
        seed, enc_seed = _rsa_seed(key, ek.name_alg, rng)
    elif isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _CURVE_ORDERS:
        seed, enc_seed = _ecc_seed(key, ek.name_alg, rng)
    else:
        raise EkMismatch(f"EK key type {ek.type.name} is not supported for MakeCredential")

    sym_key = kdfa(ek.name_alg, seed, b"STORAGE", object_name, b"", sym.key_bits)
    encryptor = Cipher(algorithms.AES(sym_key), CFB(bytes(16))).encryptor()
    enc_identity = encryptor.update(tpm2b(secret)) + encryptor.finalize()
    hmac_key = kdfa(ek.name_alg, seed, b"INTEGRITY", b"", b"", 8 * dsize)
    outer = hmac.new(hmac_key, enc_identity + object_name, hashlib_name(ek.name_alg)).digest()
    return CredentialChallenge(
        credential_blob=tpm2b(tpm2b(outer) + enc_identity),
        encrypted_secret=tpm2b(enc_seed),
    )
