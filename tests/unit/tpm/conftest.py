"""Fixtures for the tpm unit tests: the recorded quotes of tests/vectors/keylime."""

from __future__ import annotations

import pytest

from tests.paths import vector
from tests.unit.tpm.vectors import QuoteVector, keylime_dir_vector
from tpm import parse_tpm2b_public


@pytest.fixture(scope="session")
def checkquote_vector() -> QuoteVector:
    """Keylime's test_checkquote: a real TPM's RSA quote of sha256 PCR 16."""
    d = vector("keylime/quote/keylime_checkquote_sha256")
    return keylime_dir_vector(d, d / "ak_pub.pem")


@pytest.fixture(scope="session")
def tools_vector() -> QuoteVector:
    """tpm2-tools on the IBM TPM emulator: AK from ak.pub, binary nonce, PCRs 15,16,22."""
    d = vector("keylime/tpm2_tools_emulator")
    return QuoteVector(
        ak=parse_tpm2b_public((d / "ak.pub").read_bytes()),
        attest=(d / "quote.out").read_bytes(),
        signature=(d / "quotesig.out").read_bytes(),
        nonce=(d / "rand.out").read_bytes(),
        pcr_blob=(d / "quotepcr.out").read_bytes(),
    )
