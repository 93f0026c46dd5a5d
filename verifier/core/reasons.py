"""The one vocabulary of reason codes: why a round ended as it did, or why an agent moved.

Every transition, event, webhook body, evidence record and API field that names a cause uses a
``Reason``. Integrity reasons are the ``code`` of the ``IntegrityError`` that the check raised (a
unit test keeps the two in step); the others are the verifier's own. Geofence plausibility
checks keep their finer code (``location_teleport``, …) in the event details under ``reason``.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    # --- integrity failures: evidence is wrong (fail, revoke, alert) ---------------------------
    TPM_STRUCTURE_INVALID = "tpm_structure_invalid"
    EVIDENCE_MALFORMED = "evidence_malformed"
    QUOTE_SIGNATURE_INVALID = "quote_signature_invalid"
    NONCE_MISMATCH = "nonce_mismatch"
    PCR_DIGEST_MISMATCH = "pcr_digest_mismatch"
    PCR_SELECTION_MISMATCH = "pcr_selection_mismatch"
    CLOCK_NOT_MONOTONIC = "clock_not_monotonic"
    CERTIFY_INVALID = "certify_invalid"
    BOOT_PCR_MISMATCH = "boot_pcr_mismatch"
    BOOT_LOG_INVALID = "boot_log_invalid"
    BOOT_LOG_MISSING = "boot_log_missing"
    BOOT_LOG_PCR_MISMATCH = "boot_log_pcr_mismatch"
    IMA_LOG_INVALID = "ima_log_invalid"
    IMA_PCR_MISMATCH = "ima_pcr_mismatch"
    IMA_ENTRY_NOT_ALLOWED = "ima_entry_not_allowed"
    IMA_LOG_REWOUND = "ima_log_rewound"
    LOCATION_SIGNATURE_INVALID = "location_signature_invalid"
    LOCATION_STALE = "location_stale"
    LOCATION_IMPLAUSIBLE = "location_implausible"
    LOCATION_OUTSIDE_ZONE = "location_outside_zone"
    LOCATION_NONCE_MISMATCH = "location_nonce_mismatch"
    LOCATION_MISSING = "location_missing"
    # Also the reason of a notice event when the policy only records a changed receiver.
    GNSS_RECEIVER_CHANGED = "gnss_receiver_changed"
    GNSS_RECEIVER_UNIDENTIFIED = "gnss_receiver_unidentified"
    # The verifier could not evaluate evidence it received (a bug on odd input): failing closed.
    EVIDENCE_UNVERIFIABLE = "evidence_unverifiable"

    # --- reachability faults: no usable answer (unreachable, retried, never revoked) ----------
    AGENT_UNREACHABLE = "agent_unreachable"
    AGENT_DEADLINE_EXCEEDED = "agent_deadline_exceeded"
    AGENT_PROTOCOL_MISMATCH = "agent_protocol_mismatch"
    AGENT_CERTIFICATE_MISMATCH = "agent_certificate_mismatch"
    AGENT_URL_INVALID = "agent_url_invalid"

    # --- verifier faults: nothing judged the agent in time (stale, never revoked) -------------
    LEASE_EXPIRED = "lease_expired"
    ROUND_CRASHED = "round_crashed"
    POLICY_UNUSABLE = "policy_unusable"
    LOCK_LOST = "lock_lost"
    RECORD_FAILED = "record_failed"

    # --- lifecycle ------------------------------------------------------------------------------
    FIRST_ROUND = "first_round"
    REBOOT_DETECTED = "reboot_detected"
    ROUND_PASSED = "round_passed"
    AK_CHANGED = "ak_changed"
    OPERATOR_PAUSED = "operator_paused"
    OPERATOR_RESUMED = "operator_resumed"
    OPERATOR_READMITTED = "operator_readmitted"


INTEGRITY_REASONS = frozenset(
    {
        Reason.TPM_STRUCTURE_INVALID,
        Reason.EVIDENCE_MALFORMED,
        Reason.QUOTE_SIGNATURE_INVALID,
        Reason.NONCE_MISMATCH,
        Reason.PCR_DIGEST_MISMATCH,
        Reason.PCR_SELECTION_MISMATCH,
        Reason.CLOCK_NOT_MONOTONIC,
        Reason.CERTIFY_INVALID,
        Reason.BOOT_PCR_MISMATCH,
        Reason.BOOT_LOG_INVALID,
        Reason.BOOT_LOG_MISSING,
        Reason.BOOT_LOG_PCR_MISMATCH,
        Reason.IMA_LOG_INVALID,
        Reason.IMA_PCR_MISMATCH,
        Reason.IMA_ENTRY_NOT_ALLOWED,
        Reason.IMA_LOG_REWOUND,
        Reason.LOCATION_SIGNATURE_INVALID,
        Reason.LOCATION_STALE,
        Reason.LOCATION_IMPLAUSIBLE,
        Reason.LOCATION_OUTSIDE_ZONE,
        Reason.LOCATION_NONCE_MISMATCH,
        Reason.LOCATION_MISSING,
        Reason.GNSS_RECEIVER_CHANGED,
        Reason.GNSS_RECEIVER_UNIDENTIFIED,
        Reason.EVIDENCE_UNVERIFIABLE,
    }
)


def reason_of_code(code: str) -> Reason:
    """The ``Reason`` for an error's ``code``; an unknown code (a bug) is unverifiable evidence,
    so a check that raises something unexpected still fails closed."""
    try:
        return Reason(code)
    except ValueError:
        return Reason.EVIDENCE_UNVERIFIABLE
