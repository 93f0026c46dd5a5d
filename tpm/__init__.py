"""Pure TPM 2.0 structures and checks: parse, encode and verify; no device, no I/O, no clock.

Everything a verifier needs is re-exported here; the submodules hold one concept each.
"""

from __future__ import annotations

from tpm.attest import (
    Attest,
    CertifyInfo,
    ClockInfo,
    QuoteInfo,
    encode_tpms_attest,
    parse_tpms_attest,
)
from tpm.certify import verify_certify
from tpm.constants import (
    TPM_GENERATED_VALUE,
    TPM_ST_ATTEST_CERTIFY,
    TPM_ST_ATTEST_QUOTE,
    Alg,
    EccCurve,
    ObjectAttributes,
    St,
    alg_bank,
    bank_alg,
)
from tpm.credential import CredentialChallenge, make_credential
from tpm.eventlog import (
    Event,
    EventLog,
    EventType,
    SpecIdEvent,
    encode_event_log,
    parse_event_log,
)
from tpm.eventlog_replay import initial_pcr_value, replay_event_log
from tpm.keys import check_ak_attributes, check_ek_attributes, check_location_key_attributes
from tpm.pcr import (
    PcrSelection,
    PcrValues,
    ToolsPcrDump,
    encode_tpml_pcr_selection,
    parse_tpm2_tools_pcr_blob,
    parse_tpml_pcr_selection,
    pcr_digest,
)
from tpm.public import (
    PublicKey,
    SymmetricDef,
    TpmPublic,
    build_public,
    encode_tpm2b_public,
    encode_tpmt_public,
    parse_tpm2b_public,
    parse_tpmt_public,
    public_key_matches,
)
from tpm.quote import ClockProgress, QuoteResult, check_clock_progress, verify_quote
from tpm.signature import (
    TpmSignature,
    encode_tpmt_signature,
    parse_tpmt_signature,
    verify_signature,
)
from tpm.templates import ak_public, ek_public, location_key_public

__all__ = [
    "TPM_GENERATED_VALUE",
    "TPM_ST_ATTEST_CERTIFY",
    "TPM_ST_ATTEST_QUOTE",
    "Alg",
    "Attest",
    "CertifyInfo",
    "ClockInfo",
    "ClockProgress",
    "CredentialChallenge",
    "EccCurve",
    "Event",
    "EventLog",
    "EventType",
    "ObjectAttributes",
    "PcrSelection",
    "PcrValues",
    "PublicKey",
    "QuoteInfo",
    "QuoteResult",
    "SpecIdEvent",
    "St",
    "SymmetricDef",
    "ToolsPcrDump",
    "TpmPublic",
    "TpmSignature",
    "ak_public",
    "alg_bank",
    "bank_alg",
    "build_public",
    "check_ak_attributes",
    "check_clock_progress",
    "check_ek_attributes",
    "check_location_key_attributes",
    "ek_public",
    "encode_event_log",
    "encode_tpm2b_public",
    "encode_tpml_pcr_selection",
    "encode_tpms_attest",
    "encode_tpmt_public",
    "encode_tpmt_signature",
    "initial_pcr_value",
    "location_key_public",
    "make_credential",
    "parse_event_log",
    "parse_tpm2_tools_pcr_blob",
    "parse_tpm2b_public",
    "parse_tpml_pcr_selection",
    "parse_tpms_attest",
    "parse_tpmt_public",
    "parse_tpmt_signature",
    "pcr_digest",
    "public_key_matches",
    "replay_event_log",
    "verify_certify",
    "verify_quote",
    "verify_signature",
]
