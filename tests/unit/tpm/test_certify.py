"""verify_certify: the AK vouches for a TPM-resident location key."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from geoattest.errors import CertifyInvalid
from tests.support.software_tpm import SoftwareAk
from tpm import Alg, CertifyInfo, location_key_public, verify_certify

LOCATION_KEY = location_key_public(ec.generate_private_key(ec.SECP256R1()).public_key())


@pytest.fixture(params=["ecc", "rsa"])
def sim(request: pytest.FixtureRequest) -> SoftwareAk:
    return SoftwareAk.ecc() if request.param == "ecc" else SoftwareAk.rsa()


def test_certify_verifies(sim: SoftwareAk) -> None:
    nonce = os.urandom(16)
    attest, sig = sim.certify(LOCATION_KEY, nonce)
    result = verify_certify(
        signer=sim.public,
        attest=attest,
        signature=sig,
        certified=LOCATION_KEY,
        qualifying_data=nonce,
    )
    assert isinstance(result.attested, CertifyInfo)
    assert result.attested.name == LOCATION_KEY.name


def test_certify_of_another_key_rejected(sim: SoftwareAk) -> None:
    other = location_key_public(ec.generate_private_key(ec.SECP256R1()).public_key())
    attest, sig = sim.certify(other, b"n")
    with pytest.raises(CertifyInvalid, match="certified name mismatch"):
        verify_certify(
            signer=sim.public,
            attest=attest,
            signature=sig,
            certified=LOCATION_KEY,
            qualifying_data=b"n",
        )


def test_certify_with_old_qualifying_data_rejected(sim: SoftwareAk) -> None:
    attest, sig = sim.certify(LOCATION_KEY, b"old")
    with pytest.raises(CertifyInvalid, match="extraData mismatch"):
        verify_certify(
            signer=sim.public,
            attest=attest,
            signature=sig,
            certified=LOCATION_KEY,
            qualifying_data=b"new",
        )


def test_certify_signed_by_another_key_rejected(sim: SoftwareAk) -> None:
    attest, sig = sim.certify(LOCATION_KEY, b"n")
    other = (
        SoftwareAk.ecc() if isinstance(sim.key, ec.EllipticCurvePrivateKey) else SoftwareAk.rsa()
    )
    with pytest.raises(CertifyInvalid, match="signature does not verify"):
        verify_certify(
            signer=other.public,
            attest=attest,
            signature=sig,
            certified=LOCATION_KEY,
            qualifying_data=b"n",
        )


def test_quote_is_not_a_certify(sim: SoftwareAk) -> None:
    attest, sig = sim.quote(b"n", {Alg.SHA256: {0: bytes(32)}})
    with pytest.raises(CertifyInvalid, match="ATTEST_QUOTE, expected ATTEST_CERTIFY"):
        verify_certify(
            signer=sim.public,
            attest=attest,
            signature=sig,
            certified=LOCATION_KEY,
            qualifying_data=b"n",
        )


def test_malformed_certify_rejected(sim: SoftwareAk) -> None:
    attest, sig = sim.certify(LOCATION_KEY, b"n")
    with pytest.raises(CertifyInvalid, match="TPMT_SIGNATURE truncated"):
        verify_certify(
            signer=sim.public,
            attest=attest,
            signature=sig[:-1],
            certified=LOCATION_KEY,
            qualifying_data=b"n",
        )
