"""Evidence that is wrong (``IntegrityError``): in a verifier round it fails the agent and
revokes."""

from __future__ import annotations

from geoattest.errors._base import GeoattestError

# --- evidence that is wrong ---------------------------------------------------------------------


class IntegrityError(GeoattestError):
    code = "integrity_failure"
    http_status = 422


class TpmFormatError(IntegrityError):
    """Bytes that should be a TPM structure do not parse (truncated, bad tag, extra bytes)."""

    code = "tpm_structure_invalid"
    http_status = 400


class EvidenceMalformed(IntegrityError):
    """An agent's answer does not have the evidence shape (bad JSON, fields, encodings)."""

    code = "evidence_malformed"


class QuoteSignatureInvalid(IntegrityError):
    code = "quote_signature_invalid"


class NonceMismatch(IntegrityError):
    code = "nonce_mismatch"


class PcrDigestMismatch(IntegrityError):
    code = "pcr_digest_mismatch"


class PcrSelectionMismatch(IntegrityError):
    code = "pcr_selection_mismatch"


class ClockNotMonotonic(IntegrityError):
    """TPM clock, resetCount or restartCount moved backwards: a replayed or forged quote."""

    code = "clock_not_monotonic"


class CertifyInvalid(IntegrityError):
    """A TPM2_Certify structure does not verify or does not name the expected key."""

    code = "certify_invalid"


class BootPcrMismatch(IntegrityError):
    code = "boot_pcr_mismatch"


class BootLogInvalid(TpmFormatError):
    """The boot event log (TCG crypto-agile ``binary_bios_measurements``) does not parse, breaks
    a cap, or lacks a bank it must replay; the message names the byte offset."""

    code = "boot_log_invalid"
    http_status = 422


class BootLogMissing(IntegrityError):
    """The policy replays the boot event log and the agent sent none."""

    code = "boot_log_missing"


class BootLogMismatch(IntegrityError):
    """Replaying the boot event log does not reproduce a quoted PCR 0-7: the log was altered,
    or a PCR was extended without a log event.

    ``bank``, ``pcr``, ``expected`` (replayed, hex) and ``actual`` (quoted, hex) name the first
    PCR that differs; they are empty when rebuilt from a code.
    """

    code = "boot_log_pcr_mismatch"

    def __init__(
        self, message: str, *, bank: str = "", pcr: str = "", expected: str = "", actual: str = ""
    ) -> None:
        super().__init__(message)
        self.bank = bank
        self.pcr = pcr
        self.expected = expected
        self.actual = actual


class ImaLogInvalid(IntegrityError):
    code = "ima_log_invalid"


class ImaPcrMismatch(ImaLogInvalid):
    """No prefix of the IMA log replays to the quoted PCR 10: PCR 10 was extended without a log
    entry, or the log was altered."""

    code = "ima_pcr_mismatch"


class ImaEntryNotAllowed(IntegrityError):
    """An IMA entry the quote covers is not allowed by the runtime policy.

    ``path`` (file path or ima-buf name), ``digest`` (``alg:hex``) and ``line_number`` (1-based,
    in the whole log) name the offending entry; they are empty/0 when rebuilt from a code.
    """

    code = "ima_entry_not_allowed"

    def __init__(
        self, message: str, *, path: str = "", digest: str = "", line_number: int = 0
    ) -> None:
        super().__init__(message)
        self.path = path
        self.digest = digest
        self.line_number = line_number


class ImaLogRewound(IntegrityError):
    code = "ima_log_rewound"


class LocationEvidenceInvalid(IntegrityError):
    """Location evidence is malformed or its signature does not verify with the location key."""

    code = "location_signature_invalid"


class LocationStale(IntegrityError):
    code = "location_stale"


class LocationImplausible(IntegrityError):
    """A plausibility or spoofing check failed; ``reason`` is the check's own reason code."""

    code = "location_implausible"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class LocationOutsideZone(IntegrityError):
    """The zone decision does not satisfy the policy: ``outside``, or ``uncertain`` (never
    inside)."""

    code = "location_outside_zone"


class LocationNonceMismatch(IntegrityError):
    """Location evidence answers another nonce than this round's: replayed or pre-computed."""

    code = "location_nonce_mismatch"


class LocationMissing(IntegrityError):
    """The policy needs location evidence and the agent sent none (or no signature)."""

    code = "location_missing"


class GnssReceiverChanged(IntegrityError):
    """The location evidence names another GNSS receiver than the one enrolled, and the policy
    requires the enrolled one (``receiver = "require"``)."""

    code = "gnss_receiver_changed"


class GnssReceiverUnidentified(IntegrityError):
    """The policy requires the enrolled GNSS receiver, and it cannot be told from another: no
    receiver was enrolled, or the enrolled or the round's receiver sends no identity banner."""

    code = "gnss_receiver_unidentified"


class RegistrarAnswerInvalid(IntegrityError):
    """The registrar answered for another agent id than the one asked: a forged or misrouted
    answer, of which nothing is used."""

    code = "registrar_answer_invalid"
    http_status = 502


class CredentialActivationRefused(IntegrityError):
    """The TPM refused a MakeCredential blob (TPM2_ActivateCredential failed): the blob is malformed
    or was not made for this TPM's EK and AK."""

    code = "credential_activation_refused"


class ProofInvalid(IntegrityError):
    """A transparency-log proof, checkpoint, signature or residency bundle does not verify.
    Raised checking logs and bundles (offline too), never by a round."""

    code = "proof_invalid"


class LogProofInvalid(ProofInvalid):
    """An inclusion or consistency proof does not lead to the root it is checked against."""

    code = "log_proof_invalid"


class SignatureInvalid(ProofInvalid):
    """A JWS (checkpoint, bundle manifest, registrar record) is malformed, of an unexpected
    type, names its own key, or is not signed by a key the caller trusts."""

    code = "signature_invalid"


class BundleInvalid(ProofInvalid):
    """A residency-proof bundle fails verification; ``file`` names the first failing file."""

    code = "bundle_invalid"

    def __init__(self, message: str, *, file: str = "", check: str = "") -> None:
        super().__init__(f"{file}: {message}" if file else message)
        self.file = file
        self.check = check


class LogEntryInvalid(ProofInvalid):
    """Bytes that should be a transparency-log entry are not one (in canonical form)."""

    code = "log_entry_invalid"
