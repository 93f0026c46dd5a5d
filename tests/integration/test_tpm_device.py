"""TpmDevice against a real swtpm whose EK certificate comes from the session's test CA."""

from __future__ import annotations

import hashlib
import os

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from tpm2_pytss.constants import TPM2_ALG, TPM2_ST, TPMA_OBJECT
from tpm2_pytss.types import TPM2B_PUBLIC, TPMS_ATTEST, TPMT_SIGNATURE
from tpm2_pytss.utils import make_credential

from agent.tpm_device import (
    EkAlgorithm,
    KeyAlgorithm,
    TpmDevice,
    TpmQuote,
    parse_tcti,
    signing_key_template,
)
from geoattest.dev.swtpm import SwtpmCa, SwtpmInstance, free_port_pair
from geoattest.errors import (
    ConfigurationError,
    CredentialActivationRefused,
    MalformedRequest,
    TpmUnavailable,
)
from geoattest.pcr_banks import PcrBank
from tests.support import MakeSwtpm, public_key_of

pytestmark = pytest.mark.swtpm

PCRS = {PcrBank.SHA256: list(range(24))}


def _load_pem(path: os.PathLike[str]) -> x509.Certificate:
    with open(path, "rb") as handle:
        return x509.load_pem_x509_certificate(handle.read())


def _verify_signature(key: object, attest: bytes, signature: bytes) -> None:
    """Check a TPMT_SIGNATURE over ``attest`` with plain cryptography (raises InvalidSignature)."""
    sig, _ = TPMT_SIGNATURE.unmarshal(signature)
    if isinstance(key, ec.EllipticCurvePublicKey):
        assert sig.sigAlg == TPM2_ALG.ECDSA
        assert sig.signature.ecdsa.hash == TPM2_ALG.SHA256
        r = int.from_bytes(bytes(sig.signature.ecdsa.signatureR), "big")
        s = int.from_bytes(bytes(sig.signature.ecdsa.signatureS), "big")
        key.verify(encode_dss_signature(r, s), attest, ec.ECDSA(hashes.SHA256()))
    else:
        assert isinstance(key, rsa.RSAPublicKey)
        assert sig.sigAlg == TPM2_ALG.RSASSA
        raw = bytes(sig.signature.rsassa.sig)
        key.verify(raw, attest, padding.PKCS1v15(), hashes.SHA256())


def _attest(quote: TpmQuote) -> TPMS_ATTEST:
    attest, used = TPMS_ATTEST.unmarshal(quote.attest)
    assert used == len(quote.attest)
    return attest


# --- EK ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ek_algorithm", "profile"), [("auto", "H-3"), ("ecc", "H-3"), ("rsa", "L-1")]
)
def test_ek_certificate_certifies_the_recreated_ek(
    swtpm: SwtpmInstance, ek_algorithm: EkAlgorithm, profile: str
) -> None:
    with TpmDevice(swtpm.tcti, ek_algorithm=ek_algorithm) as device:
        assert device.ek_profile.name == profile
        cert = x509.load_der_x509_certificate(device.read_ek_certificate())
        ek_key = public_key_of(device.ek_public())
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert cert.public_key().public_bytes(*spki) == ek_key.public_bytes(*spki)


def test_ek_public_is_the_standard_ek_template(tpm_device: TpmDevice) -> None:
    public, _ = TPM2B_PUBLIC.unmarshal(tpm_device.ek_public())
    attrs = public.publicArea.objectAttributes
    needed = TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.DECRYPT | TPMA_OBJECT.FIXEDTPM
    assert attrs & needed == needed
    assert not attrs & TPMA_OBJECT.SIGN_ENCRYPT


def test_ek_certificate_chains_to_test_ca_only(
    tpm_device: TpmDevice, test_ca: SwtpmCa, foreign_ca: SwtpmCa
) -> None:
    cert = x509.load_der_x509_certificate(tpm_device.read_ek_certificate())
    issuer = _load_pem(test_ca.issuer_cert)
    cert.verify_directly_issued_by(issuer)
    issuer.verify_directly_issued_by(_load_pem(test_ca.root_cert))

    foreign_issuer = _load_pem(foreign_ca.issuer_cert)
    assert foreign_issuer.subject == issuer.subject  # same names: only signatures tell them apart
    with pytest.raises(InvalidSignature):
        cert.verify_directly_issued_by(foreign_issuer)


def test_foreign_ca_swtpm_does_not_chain_to_test_ca(
    make_swtpm: MakeSwtpm, test_ca: SwtpmCa, foreign_ca: SwtpmCa
) -> None:
    foreign = make_swtpm(ca=foreign_ca)
    with TpmDevice(foreign.tcti) as device:
        cert = x509.load_der_x509_certificate(device.read_ek_certificate())
    cert.verify_directly_issued_by(_load_pem(foreign_ca.issuer_cert))
    with pytest.raises(InvalidSignature):
        cert.verify_directly_issued_by(_load_pem(test_ca.issuer_cert))


def test_two_swtpms_of_one_test_have_distinct_eks(make_swtpm: MakeSwtpm) -> None:
    eks = []
    for instance in (make_swtpm(), make_swtpm()):
        with TpmDevice(instance.tcti) as device:
            eks.append(device.ek_public())
    assert eks[0] != eks[1]


# --- AK ---------------------------------------------------------------------------------------


def test_ensure_ak_is_kept_across_reopen_and_reboot(swtpm: SwtpmInstance) -> None:
    with TpmDevice(swtpm.tcti) as device:
        first = device.ensure_ak()
        assert device.ensure_ak() == first
    swtpm.restart()
    with TpmDevice(swtpm.tcti) as device:
        assert device.ensure_ak() == first
    public, _ = TPM2B_PUBLIC.unmarshal(first)
    area = public.publicArea
    assert area.type == TPM2_ALG.ECC
    needed = (
        TPMA_OBJECT.FIXEDTPM
        | TPMA_OBJECT.FIXEDPARENT
        | TPMA_OBJECT.SENSITIVEDATAORIGIN
        | TPMA_OBJECT.RESTRICTED
        | TPMA_OBJECT.SIGN_ENCRYPT
    )
    assert area.objectAttributes & needed == needed


def test_ensure_ak_refuses_a_different_key_at_the_handle(tpm_device: TpmDevice) -> None:
    tpm_device.ensure_ak(0x81010010, alg="rsa")
    with pytest.raises(ConfigurationError, match="refusing"):
        tpm_device.ensure_ak(0x81010010, alg="ecc")


@pytest.mark.parametrize(
    ("restricted", "fixed_tpm", "absent"),
    [(True, False, TPMA_OBJECT.FIXEDTPM), (False, True, TPMA_OBJECT.RESTRICTED)],
)
def test_negative_signing_keys_are_made_by_the_tpm(
    tpm_device: TpmDevice, restricted: bool, fixed_tpm: bool, absent: int
) -> None:
    template = signing_key_template("ecc", restricted=restricted, fixed_tpm=fixed_tpm)
    public, _ = TPM2B_PUBLIC.unmarshal(tpm_device.create_signing_key(template))
    assert not public.publicArea.objectAttributes & absent
    assert public.publicArea.objectAttributes & TPMA_OBJECT.SIGN_ENCRYPT


# --- quotes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["ecc", "rsa"])
def test_quote_verifies_with_the_ak_and_carries_the_nonce(
    tpm_device: TpmDevice, alg: KeyAlgorithm
) -> None:
    ak = tpm_device.ensure_ak(alg=alg)
    nonce = os.urandom(32)
    quote = tpm_device.quote(nonce, PCRS)

    _verify_signature(public_key_of(ak), quote.attest, quote.signature)
    attest = _attest(quote)
    assert attest.type == TPM2_ST.ATTEST_QUOTE
    assert bytes(attest.extraData) == nonce
    assert sorted(quote.pcrs[PcrBank.SHA256]) == list(range(24))  # read in chunks of 8
    concatenated = b"".join(quote.pcrs[PcrBank.SHA256][i] for i in range(24))
    assert bytes(attest.attested.quote.pcrDigest) == hashlib.sha256(concatenated).digest()


def test_tampered_quote_does_not_verify(tpm_device: TpmDevice) -> None:
    ak = public_key_of(tpm_device.ensure_ak())
    quote = tpm_device.quote(b"nonce", PCRS)
    tampered = bytearray(quote.attest)
    tampered[-1] ^= 1
    with pytest.raises(InvalidSignature):
        _verify_signature(ak, bytes(tampered), quote.signature)


def test_quote_verifies_with_the_pure_tpm_package(tpm_device: TpmDevice) -> None:
    from tpm.public import parse_tpm2b_public
    from tpm.quote import verify_quote

    ak = parse_tpm2b_public(tpm_device.ensure_ak())
    quote = tpm_device.quote(b"fresh-nonce", {PcrBank.SHA256: [0, 1, 7, 10]})
    values = {int(TPM2_ALG.SHA256): quote.pcrs[PcrBank.SHA256]}
    result = verify_quote(
        ak=ak,
        attest=quote.attest,
        signature=quote.signature,
        nonce=b"fresh-nonce",
        pcr_values=values,
    )
    assert result.attest.extra_data == b"fresh-nonce"


def test_reboot_increments_reset_count(swtpm: SwtpmInstance) -> None:
    with TpmDevice(swtpm.tcti) as device:
        device.ensure_ak()
        before = _attest(device.quote(b"1", PCRS)).clockInfo
    swtpm.restart()
    with TpmDevice(swtpm.tcti) as device:
        after = _attest(device.quote(b"2", PCRS)).clockInfo
    assert (after.resetCount, after.restartCount) > (before.resetCount, before.restartCount)


def test_oversized_nonce_is_refused(tpm_device: TpmDevice) -> None:
    tpm_device.ensure_ak()
    with pytest.raises(MalformedRequest):
        tpm_device.quote(bytes(65), PCRS)


def test_pcr_extend_changes_the_quoted_value(tpm_device: TpmDevice) -> None:
    tpm_device.ensure_ak()
    old = tpm_device.pcr_read({PcrBank.SHA256: [10]})[PcrBank.SHA256][10]
    measurement = hashlib.sha256(b"/usr/bin/geoattest").digest()
    tpm_device.pcr_extend(10, {PcrBank.SHA256: measurement})
    expected = hashlib.sha256(old + measurement).digest()
    assert tpm_device.pcr_read({PcrBank.SHA256: [10]})[PcrBank.SHA256][10] == expected
    assert tpm_device.quote(b"n", {PcrBank.SHA256: [10]}).pcrs == {PcrBank.SHA256: {10: expected}}


# --- credential activation --------------------------------------------------------------------


def _challenge(device: TpmDevice, ak: bytes, secret: bytes) -> tuple[bytes, bytes]:
    ek_public, _ = TPM2B_PUBLIC.unmarshal(device.ek_public())
    ak_public, _ = TPM2B_PUBLIC.unmarshal(ak)
    blob, encrypted = make_credential(ek_public, secret, ak_public.get_name())
    return bytes(blob.marshal()), bytes(encrypted.marshal())


@pytest.mark.parametrize("ek_algorithm", ["ecc", "rsa"])
def test_activate_credential_round_trip(swtpm: SwtpmInstance, ek_algorithm: EkAlgorithm) -> None:
    with TpmDevice(swtpm.tcti, ek_algorithm=ek_algorithm) as device:
        ak = device.ensure_ak()
        secret = os.urandom(32)
        blob, encrypted = _challenge(device, ak, secret)
        assert device.activate_credential(blob, encrypted) == secret


@pytest.mark.parametrize("ek_algorithm", ["ecc", "rsa"])
def test_activate_credential_with_pure_make_credential(
    swtpm: SwtpmInstance, ek_algorithm: EkAlgorithm
) -> None:
    from tpm.credential import make_credential as pure_make_credential
    from tpm.public import parse_tpm2b_public

    with TpmDevice(swtpm.tcti, ek_algorithm=ek_algorithm) as device:
        ak = parse_tpm2b_public(device.ensure_ak())
        ek = parse_tpm2b_public(device.ek_public())
        challenge = pure_make_credential(ek, ak.name, b"registrar-secret")
        recovered = device.activate_credential(
            challenge.credential_blob, challenge.encrypted_secret
        )
    assert recovered == b"registrar-secret"


def test_credential_for_another_ak_is_refused(tpm_device: TpmDevice) -> None:
    ak = tpm_device.ensure_ak()
    other = tpm_device.create_signing_key(signing_key_template("ecc"))
    blob, encrypted = _challenge(tpm_device, other, os.urandom(32))
    assert ak != other
    with pytest.raises(CredentialActivationRefused, match="refused"):
        tpm_device.activate_credential(blob, encrypted)


def test_credential_for_another_tpm_is_refused(make_swtpm: MakeSwtpm) -> None:
    first, second = make_swtpm(), make_swtpm()
    with TpmDevice(first.tcti) as one, TpmDevice(second.tcti) as two:
        blob, encrypted = _challenge(one, two.ensure_ak(), os.urandom(32))
        with pytest.raises(CredentialActivationRefused):
            two.activate_credential(blob, encrypted)


@pytest.mark.parametrize(
    ("blob", "secret"), [(b"\x00", b"\x00\x00"), (b"\x00\x02ab", b"\x00\x00trailing")]
)
def test_malformed_credential_is_refused(tpm_device: TpmDevice, blob: bytes, secret: bytes) -> None:
    tpm_device.ensure_ak()
    with pytest.raises(CredentialActivationRefused):
        tpm_device.activate_credential(blob, secret)


# --- location key (certified by the AK) -------------------------------------------------------


def test_location_key_is_certified_by_the_ak_and_signs(tpm_device: TpmDevice) -> None:
    ak = public_key_of(tpm_device.ensure_ak())
    location = tpm_device.create_location_key()
    assert tpm_device.create_location_key() == location
    attest_bytes, signature = tpm_device.certify(0x81010003, b"certify-nonce")
    _verify_signature(ak, attest_bytes, signature)
    attest, _ = TPMS_ATTEST.unmarshal(attest_bytes)
    location_public, _ = TPM2B_PUBLIC.unmarshal(location)
    assert attest.type == TPM2_ST.ATTEST_CERTIFY
    assert bytes(attest.attested.certify.name) == bytes(location_public.get_name())
    assert bytes(attest.extraData) == b"certify-nonce"

    digest = hashlib.sha256(b"location evidence").digest()
    signature = tpm_device.sign_digest(0x81010003, digest)
    _verify_signature(public_key_of(location), b"location evidence", signature)


# --- errors -----------------------------------------------------------------------------------


def test_nothing_listening_is_tpm_unavailable() -> None:
    port = free_port_pair()
    with pytest.raises(TpmUnavailable, match=f"port={port}"):
        TpmDevice(f"swtpm:host=127.0.0.1,port={port}")


def test_stopped_swtpm_is_tpm_unavailable(swtpm: SwtpmInstance) -> None:
    with TpmDevice(swtpm.tcti) as device:
        device.ensure_ak()
        swtpm.stop()
        with pytest.raises(TpmUnavailable):
            device.quote(b"n", PCRS)


def test_unknown_tcti_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="unsupported TCTI"):
        parse_tcti("libtpms:whatever")
    assert parse_tcti("device:/dev/tpmrm0") == ("device", "/dev/tpmrm0")
    assert parse_tcti("tabrmd") == ("tabrmd", None)


def test_swtpm_daemon_mode_is_idempotent(make_swtpm: MakeSwtpm) -> None:
    child = make_swtpm()
    child.stop()
    daemon = SwtpmInstance(child.state_dir)
    daemon.start(daemon=True)
    try:
        port = daemon.port
        daemon.start(port, daemon=True)  # already running: no-op
        again = SwtpmInstance(child.state_dir)
        again.start(daemon=True)  # a second process (quickstart rerun) finds the running daemon
        assert again.tcti == daemon.tcti
        with TpmDevice(daemon.tcti) as device:
            device.ensure_ak()
        daemon.restart()
        assert daemon.running
    finally:
        SwtpmInstance(child.state_dir).stop()  # another process (quickstart) can stop it too
    assert not daemon.running
