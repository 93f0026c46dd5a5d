"""TPM2_Certify verification: a TPM key vouches that another object lives in the same TPM."""

from __future__ import annotations

import hmac

from geoattest.errors import CertifyInvalid, QuoteSignatureInvalid, TpmFormatError
from tpm.attest import Attest, CertifyInfo, parse_tpms_attest
from tpm.public import TpmPublic
from tpm.signature import parse_tpmt_signature, verify_signature

__all__ = ["verify_certify"]


def verify_certify(
    *,
    signer: TpmPublic,
    attest: bytes,
    signature: bytes,
    certified: TpmPublic,
    qualifying_data: bytes,
) -> Attest:
    """Verify TPM2_Certify output: ``signer`` (usually the AK) certified ``certified``.

    Checks, in order: the TPMT_SIGNATURE parses and verifies over ``attest`` with ``signer``; the
    TPMS_ATTEST parses and is of type ATTEST_CERTIFY; its certified name equals
    ``certified.name`` (so the public area is exactly the one the TPM holds); its extraData equals
    ``qualifying_data``. Raises `CertifyInvalid` naming the failed check (chained to the
    underlying `QuoteSignatureInvalid` or `TpmFormatError`).
    """
    try:
        sig = parse_tpmt_signature(signature)
        verify_signature(signer, attest, sig)
        parsed = parse_tpms_attest(attest)
    except (QuoteSignatureInvalid, TpmFormatError) as e:
        raise CertifyInvalid(f"certify evidence rejected: {e.message}") from e
    info = parsed.attested
    if not isinstance(info, CertifyInfo):
        raise CertifyInvalid(f"TPMS_ATTEST type is {parsed.type.name}, expected ATTEST_CERTIFY")
    if not hmac.compare_digest(info.name, certified.name):
        raise CertifyInvalid(
            f"certified name mismatch: expected {certified.name.hex()}, got {info.name.hex()}"
        )
    if not hmac.compare_digest(parsed.extra_data, qualifying_data):
        raise CertifyInvalid(
            f"certify extraData mismatch: expected {qualifying_data.hex()}, "
            f"got {parsed.extra_data.hex()}"
        )
    return parsed
