"""make_credential: round trip through an independent software ActivateCredential, and a
cross-check with tpm2-pytss (its make_credential output and its TPM2B unmarshalling)."""

from __future__ import annotations

import itertools

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash

from geoattest.errors import AkInvalid, EkMismatch
from tests.paths import vector
from tests.support.software_tpm import kbkdf, software_activate, split_tpm2b
from tpm import (
    Alg,
    TpmPublic,
    ak_public,
    ek_public,
    encode_tpm2b_public,
    make_credential,
    parse_tpm2b_public,
)
from tpm.credential import kdfa, kdfe

EkPrivate = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
AK_NAME = ak_public(ec.generate_private_key(ec.SECP256R1()).public_key()).name
SECRET = b"0123456789abcdef0123456789abcdef"


def _ek(kind: str) -> tuple[EkPrivate, TpmPublic]:
    key: EkPrivate
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    return key, ek_public(key.public_key())


@pytest.fixture(scope="module", params=["rsa", "ecc"])
def ek(request: pytest.FixtureRequest) -> tuple[EkPrivate, TpmPublic]:
    return _ek(str(request.param))


def test_round_trip(ek: tuple[EkPrivate, TpmPublic]) -> None:
    key, pub = ek
    challenge = make_credential(pub, AK_NAME, SECRET)
    got = software_activate(
        key, pub, AK_NAME, challenge.credential_blob, challenge.encrypted_secret
    )
    assert got == SECRET


def test_bound_to_the_object_name(ek: tuple[EkPrivate, TpmPublic]) -> None:
    key, pub = ek
    challenge = make_credential(pub, AK_NAME, SECRET)
    other_name = AK_NAME[:-1] + bytes([AK_NAME[-1] ^ 1])
    with pytest.raises(ValueError, match="integrity HMAC mismatch"):
        software_activate(
            key, pub, other_name, challenge.credential_blob, challenge.encrypted_secret
        )


def test_only_the_ek_holder_can_activate(ek: tuple[EkPrivate, TpmPublic]) -> None:
    key, pub = ek
    other_key, _ = _ek("rsa" if isinstance(key, rsa.RSAPrivateKey) else "ecc")
    challenge = make_credential(pub, AK_NAME, SECRET)
    with pytest.raises(ValueError):  # noqa: PT011 - OAEP decryption error or HMAC mismatch
        software_activate(
            other_key, pub, AK_NAME, challenge.credential_blob, challenge.encrypted_secret
        )


def test_rng_drives_the_seed(ek: tuple[EkPrivate, TpmPublic]) -> None:
    _, pub = ek

    def counting_rng() -> itertools.count[int]:
        return itertools.count(7)

    def make() -> bytes:
        it = counting_rng()
        challenge = make_credential(
            pub, AK_NAME, SECRET, rng=lambda n: bytes(next(it) % 256 for _ in range(n))
        )
        return challenge.credential_blob

    assert make() == make()
    assert make_credential(pub, AK_NAME, SECRET).credential_blob != make()


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
def test_pytss_make_credential_activates_with_our_reference(
    ek: tuple[EkPrivate, TpmPublic],
) -> None:
    """tpm2-pytss's make_credential output passes the same software activation: the test's
    activation is a faithful model, so the round trip above is meaningful."""
    from tpm2_pytss.types import TPM2B_NAME, TPM2B_PUBLIC
    from tpm2_pytss.utils import make_credential as pytss_make_credential

    key, pub = ek
    tss_pub = TPM2B_PUBLIC.unmarshal(encode_tpm2b_public(pub))[0]
    blob, secret = pytss_make_credential(tss_pub, SECRET, TPM2B_NAME(AK_NAME))
    got = software_activate(key, pub, AK_NAME, bytes(blob.marshal()), bytes(secret.marshal()))
    assert got == SECRET


def test_output_unmarshals_as_esapi_arguments(ek: tuple[EkPrivate, TpmPublic]) -> None:
    from tpm2_pytss.types import TPM2B_ENCRYPTED_SECRET, TPM2B_ID_OBJECT

    _, pub = ek
    challenge = make_credential(pub, AK_NAME, SECRET)
    id_object, used = TPM2B_ID_OBJECT.unmarshal(challenge.credential_blob)
    assert used == len(challenge.credential_blob)
    assert bytes(id_object.marshal()) == challenge.credential_blob
    enc, used = TPM2B_ENCRYPTED_SECRET.unmarshal(challenge.encrypted_secret)
    assert used == len(challenge.encrypted_secret)
    assert bytes(enc.marshal()) == challenge.encrypted_secret


def test_same_shape_as_tpm2_tools_makecredential() -> None:
    """mkcred.out (tpm2_makecredential for ek.pub, ak.name, secret.data) has our sizes."""
    base = "keylime/tpm2_tools_emulator"
    ek = parse_tpm2b_public(vector(f"{base}/ek.pub").read_bytes())
    name = vector(f"{base}/ak.name").read_bytes()
    secret = vector(f"{base}/secret.data").read_bytes()
    tools = vector(f"{base}/mkcred.out").read_bytes()
    assert tools[:8] == bytes.fromhex("badcc0de00000001")
    id_object, rest = split_tpm2b(tools[8:])
    enc_secret, rest = split_tpm2b(rest)
    assert rest == b""
    ours = make_credential(ek, name, secret)
    assert len(ours.credential_blob) == 2 + len(id_object)
    assert len(ours.encrypted_secret) == 2 + len(enc_secret)
    integrity, _ = split_tpm2b(id_object)
    ours_integrity, _ = split_tpm2b(split_tpm2b(ours.credential_blob)[0])
    assert len(integrity) == len(ours_integrity) == 32


def test_kdfs_match_cryptography() -> None:
    seed = bytes(range(32))
    assert kdfa(Alg.SHA256, seed, b"STORAGE", b"ctx", b"", 128) == kbkdf(
        seed, b"STORAGE", b"ctx", 16
    )
    assert kdfa(Alg.SHA256, seed, b"INTEGRITY\0", b"", b"", 520) == kbkdf(
        seed, b"INTEGRITY", b"", 65
    )
    expected = ConcatKDFHash(hashes.SHA256(), 40, otherinfo=b"IDENTITY\0uv").derive(seed)
    assert kdfe(Alg.SHA256, seed, b"IDENTITY", b"u", b"v", 320) == expected


def test_input_errors() -> None:
    ak = ak_public(ec.generate_private_key(ec.SECP256R1()).public_key())
    with pytest.raises(EkMismatch, match="restricted decryption key"):
        make_credential(ak, AK_NAME, SECRET)
    _, pub = _ek("ecc")
    with pytest.raises(AkInvalid, match="not nameAlg"):
        make_credential(pub, AK_NAME[:-1], SECRET)
    with pytest.raises(AkInvalid, match="too short"):
        make_credential(pub, b"\x00", SECRET)
    with pytest.raises(ValueError, match=r"1\.\.32 bytes, got 33"):
        make_credential(pub, AK_NAME, SECRET + b"x")
    with pytest.raises(ValueError, match="got 0"):
        make_credential(pub, AK_NAME, b"")
