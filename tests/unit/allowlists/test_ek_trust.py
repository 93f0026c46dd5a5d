"""allowlists.ek_trust: trust store loading and EK chain validation.

Real vendor data first (Keylime's tpm_cert_store and real EK leafs), then generated chains for
the attacks real data cannot show. Every rejection test names the check it proves.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from allowlists.certs import load_certificate
from allowlists.ek_trust import (
    MAX_CHAIN_LENGTH,
    MAX_INTERMEDIATES,
    MAX_SIGNATURE_CHECKS,
    EkTrustStore,
    validate_ek_certificate,
)
from geoattest.errors import EkUntrusted, PolicyInvalid
from tests.support.software_pki import NOW, Issued, ec_key, make_cert
from tests.unit.allowlists.conftest import leaf_bytes, store_cert

IN_2026 = datetime(2026, 6, 1, tzinfo=UTC)


def store_of(*issued: Issued) -> EkTrustStore:
    return EkTrustStore.from_blobs({f"ca{i}.pem": ca.pem for i, ca in enumerate(issued)})


# --- the trust store ----------------------------------------------------------------------------


def test_vendor_store_dedupes_identical_files(cert_store_blobs: dict[str, bytes]) -> None:
    store = EkTrustStore.from_blobs(cert_store_blobs)
    duplicates = {"IFX1", "IFX2", "IFX3", "IFX4", "IFX5", "IFX8"}
    assert len(store) == len(cert_store_blobs) - len(duplicates)
    ifx1 = load_certificate(cert_store_blobs["IFX1.pem"])
    assert ifx1 in store
    assert store.sources[ifx1.fingerprint] == ("IFX1.pem", "IFX_RSA_01I.pem")


def test_pem_bundle_with_several_certificates() -> None:
    a, b = make_cert("bundle A"), make_cert("bundle B")
    store = EkTrustStore.from_blobs({"bundle.pem": a.pem + a.pem + b.pem})
    assert len(store) == 2


def test_blob_that_is_not_a_certificate_is_named() -> None:
    with pytest.raises(PolicyInvalid, match=r"trust store file 'notes.pem': neither DER"):
        EkTrustStore.from_blobs({"ca.pem": make_cert("ok").pem, "notes.pem": b"just text"})


def test_empty_store_is_refused() -> None:
    with pytest.raises(PolicyInvalid, match=r"trust store is empty"):
        EkTrustStore.from_blobs({})


# --- real vendor chains -------------------------------------------------------------------------


def test_nuvoton_non_der_leaf_chains_to_nuvo_2111(vendor_store: EkTrustStore) -> None:
    chain = validate_ek_certificate(
        leaf_bytes("nuvoton_ek_leaf_nonDER.der"), vendor_store, now=IN_2026
    )
    assert len(chain.certificates) == 2
    assert chain.leaf.reencoded
    assert chain.anchor_fingerprint == load_certificate(store_cert("NUVO_2111")).fingerprint
    assert chain.leaf.tpm_model == "NPCT75x"


def test_nuvoton_leaf_does_not_chain_to_another_nuvoton_root() -> None:
    # Signature verification, not the name: NUVO_2110 has a different key and name.
    store = EkTrustStore.from_blobs({"NUVO_2110.pem": store_cert("NUVO_2110")})
    with pytest.raises(EkUntrusted, match=r"not found in trust store"):
        validate_ek_certificate(leaf_bytes("nuvoton_ek_leaf_nonDER.der"), store, now=IN_2026)


@pytest.mark.parametrize(
    ("leaf", "issuer"),
    [
        ("infineon_optiga_rsa_ek_leaf_CA035.der", "RSA Manufacturing CA 035"),
        ("infineon_optiga_ecc_ek_leaf_CA035.der", "ECC Manufacturing CA 035"),
    ],
)
def test_optiga_ca035_leafs_have_unknown_issuer(
    vendor_store: EkTrustStore, leaf: str, issuer: str
) -> None:
    with pytest.raises(EkUntrusted, match=rf"issuer '.*{issuer}.*' not found in trust store \(45"):
        validate_ek_certificate(leaf_bytes(leaf), vendor_store, now=IN_2026)


def test_stm_intermediate_validates_via_stm_root_to_globalsign() -> None:
    store = EkTrustStore.from_blobs({"GS_TPM_RT.pem": store_cert("GS_TPM_RT")})
    chain = validate_ek_certificate(
        store_cert("STM_RSA_05I"),
        store,
        now=IN_2026,
        intermediates=[store_cert("STM_RSA_RT")],
    )
    assert [c.subject_name.rfc4514_string() for c in chain.certificates] == [
        "CN=STM TPM EK Intermediate CA 05,O=STMicroelectronics NV,C=CH",
        "CN=STM TPM EK Root CA,O=STMicroelectronics NV,C=CH",
        "CN=GlobalSign Trusted Platform Module Root CA,O=GlobalSign,"
        "OU=GlobalSign Trusted Computing Certificate Authority",
    ]


def test_stm_intermediate_without_the_stm_root_has_unknown_issuer() -> None:
    store = EkTrustStore.from_blobs({"GS_TPM_RT.pem": store_cert("GS_TPM_RT")})
    with pytest.raises(EkUntrusted, match=r"'CN=STM TPM EK Root CA.*not found in trust store"):
        validate_ek_certificate(store_cert("STM_RSA_05I"), store, now=IN_2026)


def test_stm_intermediate_stops_at_the_first_anchor_in_the_full_store(
    vendor_store: EkTrustStore,
) -> None:
    chain = validate_ek_certificate(store_cert("STM_RSA_05I"), vendor_store, now=IN_2026)
    assert chain.anchor.subject == "CN=STM TPM EK Root CA,O=STMicroelectronics NV,C=CH"


def test_expired_ifx_intermediate_is_refused(vendor_store: EkTrustStore) -> None:
    after = datetime(2025, 10, 21, tzinfo=UTC)
    with pytest.raises(
        EkUntrusted, match=r"certificate 'CN=IFX TPM EK Intermediate CA 01.*' expired on 2025-10-20"
    ):
        validate_ek_certificate(store_cert("IFX_RSA_01I"), vendor_store, now=after)


def test_ifx_akid_serial_mismatch_still_chains_by_signature() -> None:
    """Documented behaviour: the AKID's issuer+serial (03) fit no copy of IFX_RSA_RT, so
    OpenSSL's strict issuer check refuses the link; we decide links by signature, the RT key
    did sign IFX_RSA_01I, so the chain is accepted while 01I is valid."""
    intermediate = load_certificate(store_cert("IFX_RSA_01I"))
    root = load_certificate(store_cert("IFX_RSA_RT"))
    akid = intermediate.view.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert akid.authority_cert_serial_number == 3 != root.serial
    assert akid.key_identifier == root.subject_key_id

    store = EkTrustStore.from_blobs({"IFX_RSA_RT.pem": store_cert("IFX_RSA_RT")})
    before_expiry = datetime(2025, 1, 1, tzinfo=UTC)
    chain = validate_ek_certificate(intermediate, store, now=before_expiry)
    assert chain.anchor == root
    assert intermediate.view.signature_hash_algorithm is not None
    assert intermediate.view.signature_hash_algorithm.name == "sha1"  # PKCS#1 v1.5 SHA-1


def test_self_signed_store_root_is_not_its_own_anchor(vendor_store: EkTrustStore) -> None:
    with pytest.raises(EkUntrusted, match=r"self-signed and not its own anchor"):
        validate_ek_certificate(store_cert("NUVO_2111"), vendor_store, now=IN_2026)


# --- generated chains ---------------------------------------------------------------------------


def test_ek_leaf_with_critical_san_directory_name_is_accepted() -> None:
    ca = make_cert("EK CA")
    leaf = make_cert("", issuer=ca, ca=False, tpm_san=True)
    chain = validate_ek_certificate(leaf.der, store_of(ca), now=NOW)
    assert chain.leaf.subject == ""
    assert chain.leaf.tpm_manufacturer == "id:4E544300"
    assert chain.leaf.tpm_version == "id:00070002"


def test_same_subject_different_key_only_the_signer_is_accepted() -> None:
    right = make_cert("swtpm-localca")
    wrong = make_cert("swtpm-localca")
    assert right.cert.subject == wrong.cert.subject
    leaf = make_cert("ek", issuer=right, ca=False)

    assert validate_ek_certificate(leaf.der, store_of(right), now=NOW).anchor.raw == right.der
    with pytest.raises(EkUntrusted, match=r"signature of 'CN=ek.*' does not verify with CA"):
        validate_ek_certificate(leaf.der, store_of(wrong), now=NOW)
    both = validate_ek_certificate(leaf.der, store_of(wrong, right), now=NOW)
    assert both.anchor.raw == right.der


def test_wrongly_signed_leaf_is_refused() -> None:
    ca = make_cert("EK CA")
    forged = make_cert("ek", issuer=ca, ca=False, signing_key=ec_key())
    with pytest.raises(EkUntrusted, match=r"does not verify with CA 'CN=EK CA"):
        validate_ek_certificate(forged.der, store_of(ca), now=NOW)


def test_expired_ca_is_refused() -> None:
    ca = make_cert("old CA", not_after=NOW - timedelta(days=1))
    leaf = make_cert("ek", issuer=ca, ca=False)
    with pytest.raises(EkUntrusted, match=r"CA certificate 'CN=old CA.*' expired on"):
        validate_ek_certificate(leaf.der, store_of(ca), now=NOW)


def test_not_yet_valid_ca_is_refused() -> None:
    ca = make_cert("future CA", not_before=NOW + timedelta(days=1))
    leaf = make_cert("ek", issuer=ca, ca=False)
    with pytest.raises(EkUntrusted, match=r"CA certificate 'CN=future CA.*' is not valid before"):
        validate_ek_certificate(leaf.der, store_of(ca), now=NOW)


def test_expired_leaf_is_refused() -> None:
    ca = make_cert("CA")
    leaf = make_cert("ek", issuer=ca, ca=False, not_after=NOW - timedelta(seconds=1))
    with pytest.raises(EkUntrusted, match=r"certificate 'CN=ek.*' expired on"):
        validate_ek_certificate(leaf.der, store_of(ca), now=NOW)


@pytest.mark.parametrize("basic_constraints", [False, None], ids=["cA=false", "absent"])
def test_non_ca_issuer_is_refused(basic_constraints: bool | None) -> None:
    not_a_ca = make_cert("end entity", ca=basic_constraints)
    leaf = make_cert("ek", issuer=not_a_ca, ca=False)
    with pytest.raises(EkUntrusted, match=r"issuer 'CN=end entity.*' of 'CN=ek.*' is not a CA"):
        validate_ek_certificate(leaf.der, store_of(not_a_ca), now=NOW)


def test_ca_without_key_cert_sign_is_refused() -> None:
    ca = make_cert("no certsign", key_cert_sign=False)
    leaf = make_cert("ek", issuer=ca, ca=False)
    with pytest.raises(EkUntrusted, match=r"does not allow keyCertSign"):
        validate_ek_certificate(leaf.der, store_of(ca), now=NOW)


def test_path_length_constraint_is_enforced() -> None:
    root = make_cert("root", path_length=0)
    intermediate = make_cert("intermediate", issuer=root, path_length=0)
    leaf = make_cert("ek", issuer=intermediate, ca=False)
    with pytest.raises(EkUntrusted, match=r"allows 0 intermediate CAs below it, the chain has 1"):
        validate_ek_certificate(leaf.der, store_of(root), now=NOW, intermediates=[intermediate.der])
    ok_root = make_cert("root", path_length=1)
    ok_intermediate = make_cert("intermediate", issuer=ok_root, path_length=0)
    ok_leaf = make_cert("ek", issuer=ok_intermediate, ca=False)
    chain = validate_ek_certificate(
        ok_leaf.der, store_of(ok_root), now=NOW, intermediates=[ok_intermediate.der]
    )
    assert len(chain.certificates) == 3


def _ladder(length: int) -> list[Issued]:
    """root, then CAs each issued by the previous one, then a leaf: ``length`` certs."""
    certs = [make_cert("level 0")]
    for level in range(1, length - 1):
        certs.append(make_cert(f"level {level}", issuer=certs[-1]))
    certs.append(make_cert("ek", issuer=certs[-1], ca=False))
    return certs


def test_chain_length_is_bounded() -> None:
    ok = _ladder(MAX_CHAIN_LENGTH)
    chain = validate_ek_certificate(
        ok[-1].der, store_of(ok[0]), now=NOW, intermediates=[c.der for c in ok[1:-1]]
    )
    assert len(chain.certificates) == MAX_CHAIN_LENGTH

    too_long = _ladder(MAX_CHAIN_LENGTH + 1)
    with pytest.raises(EkUntrusted, match=f"no trust anchor within {MAX_CHAIN_LENGTH}"):
        validate_ek_certificate(
            too_long[-1].der,
            store_of(too_long[0]),
            now=NOW,
            intermediates=[c.der for c in too_long[1:-1]],
        )


def test_supplied_intermediate_is_never_an_anchor() -> None:
    root = make_cert("root")
    intermediate = make_cert("intermediate", issuer=root)
    leaf = make_cert("ek", issuer=intermediate, ca=False)
    other = make_cert("unrelated root")
    with pytest.raises(EkUntrusted, match=r"CA certificate issuer 'CN=root,O=geoattest test' not"):
        validate_ek_certificate(
            leaf.der, store_of(other), now=NOW, intermediates=[intermediate.der]
        )


def test_too_many_intermediates_are_refused() -> None:
    ca = make_cert("CA")
    leaf = make_cert("ek", issuer=ca, ca=False)
    with pytest.raises(EkUntrusted, match=f"at most {MAX_INTERMEDIATES}"):
        validate_ek_certificate(
            leaf.der, store_of(ca), now=NOW, intermediates=[ca.der] * (MAX_INTERMEDIATES + 1)
        )


def test_path_search_is_bounded_against_same_name_same_key_intermediates() -> None:
    """Eight CAs named X, all signed by one key: every one verifies every other, so an unbounded
    search would try 8*7*6*5 paths that never reach the store."""
    key = ec_key()
    template = make_cert("X", key=key)
    loop = [make_cert("X", key=key, issuer=template) for _ in range(MAX_INTERMEDIATES)]
    leaf = make_cert("ek", issuer=template, ca=False)
    with pytest.raises(EkUntrusted, match=f"gave up after {MAX_SIGNATURE_CHECKS} signature"):
        validate_ek_certificate(
            leaf.der, store_of(make_cert("X")), now=NOW, intermediates=[c.der for c in loop]
        )


def test_garbage_intermediate_is_named() -> None:
    ca = make_cert("CA")
    leaf = make_cert("ek", issuer=ca, ca=False)
    with pytest.raises(EkUntrusted, match=r"intermediate certificate #2"):
        validate_ek_certificate(
            leaf.der, store_of(ca), now=NOW, intermediates=[ca.der, b"\x30\x00"]
        )


def test_rsa_pss_signed_chain_is_supported() -> None:
    ca = make_cert("PSS CA", key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    leaf = make_cert(
        "ek",
        issuer=ca,
        ca=False,
        hash_alg=hashes.SHA384(),
        rsa_padding=padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48),
    )
    assert validate_ek_certificate(leaf.der, store_of(ca), now=NOW).anchor.raw == ca.der


def test_unsupported_signature_algorithm_is_refused() -> None:
    ca = make_cert("Ed25519 CA", key=ed25519.Ed25519PrivateKey.generate())
    leaf = make_cert("ek", issuer=ca, ca=False)
    with pytest.raises(EkUntrusted, match=r"signature algorithm 1\.3\.101\.112 .* not supported"):
        validate_ek_certificate(leaf.der, store_of(ca), now=NOW)


def test_naive_now_is_a_caller_bug() -> None:
    ca = make_cert("CA")
    with pytest.raises(ValueError, match=r"timezone-aware"):
        validate_ek_certificate(ca.der, store_of(ca), now=datetime(2026, 1, 1))
