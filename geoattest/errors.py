"""The one exception hierarchy of geoattest.

Every error a client or a piece of evidence can cause has a stable snake_case ``code`` and the HTTP
status it maps to. Three branches, mirroring the design's trust rules:

- ``RequestError``: the caller sent something we refuse (4xx at the API edge).
- ``IntegrityError``: evidence is wrong. In a verifier round this fails the agent and revokes.
- ``ReachabilityError``: a part could not be reached (agent, TPM, Redis, DB). Retry, never revoke.

This module is a leaf: it imports nothing from the project.
"""

from __future__ import annotations

from typing import ClassVar


class GeoattestError(Exception):
    """Root of every error geoattest raises on purpose."""

    code: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, dict[str, str]]:
        """The JSON error body of the API: ``{"error": {"code", "message"}}``."""
        return {"error": {"code": self.code, "message": self.message}}


# --- requests we refuse -------------------------------------------------------------------------


class RequestError(GeoattestError):
    code = "bad_request"
    http_status = 400


class MalformedRequest(RequestError):
    code = "malformed_request"


class PcrBankUnknown(MalformedRequest):
    """A PCR bank name that is not one of sha1, sha256, sha384, sha512 (in a policy, a quote
    request, a token session): refused where it enters, never carried inward as a string."""

    code = "pcr_bank_unknown"


class BodyTooLarge(RequestError):
    """A request body (or, compressed, what it expands to) is larger than the route allows."""

    code = "request_entity_too_large"  # what werkzeug's own 413 renders as, one code for both
    http_status = 413


class EncodingUnsupported(RequestError):
    """A ``Content-Encoding`` the route does not decode (it takes ``identity`` and ``gzip``)."""

    code = "unsupported_content_encoding"
    http_status = 415


class AgentIdInvalid(RequestError):
    """An agent id (in a path or a body) is not 1-64 of ``[A-Za-z0-9._-]`` starting with a
    letter or digit (``wire.AGENT_ID_PATTERN``)."""

    code = "agent_id_invalid"


class NotFound(RequestError):
    code = "not_found"
    http_status = 404


class Conflict(RequestError):
    code = "conflict"
    http_status = 409


class AgentIdTaken(Conflict):
    """An agent id is already enrolled with another EK; re-enrolment never overwrites it."""

    code = "agent_id_taken"


class EkAlreadyEnrolled(Conflict):
    """This EK is already bound to another agent id: one TPM, one agent."""

    code = "ek_already_enrolled"


class Unauthorized(RequestError):
    code = "unauthorized"
    http_status = 401


class ApiKeyRequired(Unauthorized):
    """An operator route was called without an API key (``Authorization: Bearer gak_…``)."""

    code = "api_key_required"


class ApiKeyInvalid(Unauthorized):
    """The API key presented is unknown, revoked or malformed."""

    code = "api_key_invalid"


class RoleInsufficient(RequestError):
    """The API key's role does not allow this call (viewer < compliance < admin)."""

    code = "role_insufficient"
    http_status = 403


class EkUntrusted(RequestError):
    """The EK certificate does not chain to an allowlisted manufacturer CA."""

    code = "ek_untrusted"
    http_status = 403


class EkNotPinned(RequestError):
    """Pins are configured and the EK certificate matches none of them."""

    code = "ek_not_pinned"
    http_status = 403


class EkMismatch(RequestError):
    """The EK public area the agent sent is not the key in its EK certificate."""

    code = "ek_mismatch"


class AkInvalid(RequestError):
    """The AK public area is malformed or its attributes allow misuse (not restricted, not
    fixedTPM...)."""

    code = "ak_invalid"


class ActivationFailed(RequestError):
    """The agent could not prove it recovered the MakeCredential secret with its TPM."""

    code = "activation_failed"
    http_status = 403


class LocationKeyInvalid(RequestError):
    """A location key's attributes show it could leave the TPM, or its certification is wrong."""

    code = "location_key_invalid"


class ZoneInvalid(RequestError):
    """A zone file or feature is not a valid polygon (names the feature and the reason)."""

    code = "zone_invalid"


class ZoneGeometryInvalid(ZoneInvalid):
    """A zone's polygon is invalid (self-intersecting, …) but ``make_valid`` can repair it: the
    caller's message says how to ask for that (``--repair``, ``zones_repair``)."""

    code = "zone_geometry_invalid"


class PolicyInvalid(RequestError):
    """A policy document (runtime policy, pins file, location policy) is malformed."""

    code = "policy_invalid"


class PolicyNotSigned(RequestError):
    """A signature is required and the policy has none (a plain policy, or a DSSE envelope whose
    ``signatures`` list is empty)."""

    code = "policy_not_signed"


class PolicyKeyRequired(RequestError):
    """A signed policy was given without the key to verify it (never imported unverified)."""

    code = "policy_key_required"


class PolicySignatureInvalid(RequestError):
    """No signature of a signed policy verifies under the key given (wrong key, bad signature,
    tampered payload); the message says which signatures were tried."""

    code = "policy_signature_invalid"
    http_status = 403


class AgentNotActive(Conflict):
    """The registrar has not (yet) proven this agent's AK, or it lacks an evidence API."""

    code = "agent_not_active"


class AgentCertificateInvalid(Conflict):
    """The TLS certificate an agent registered cannot be pinned (``geoattest.pinned_certificate``:
    not a self-signed leaf, a CA certificate, or not a certificate); it re-enrols with its own."""

    code = "agent_certificate_invalid"


class AgentAlreadyVerified(Conflict):
    code = "agent_already_verified"


class PolicyInUse(Conflict):
    code = "policy_in_use"


class JoseMalformed(RequestError):
    """A JWS, JWE or JWK is not what geoattest accepts (``geoattest.jose``): bad base64url,
    duplicate header members, a key off P-256, a ciphertext that does not decrypt."""

    code = "jose_malformed"


class PushChallengeUnknown(RequestError):
    """A push post names a challenge not issued to this agent, already used, or expired (a
    replayed or late post, or another agent's nonce)."""

    code = "push_challenge_unknown"
    http_status = 403


class PushCertificateRefused(RequestError):
    """The client certificate of a push call is not the one registered for the agent it names,
    or the agent is not a push agent of this verifier."""

    code = "push_certificate_refused"
    http_status = 403


class PushChallengeRateLimited(RequestError):
    """A push agent asked for more challenges than ``push_challenges_per_minute``."""

    code = "push_challenge_rate_limited"
    http_status = 429


class PushChallengeStale(RequestError):
    """A push post answers a challenge whose round has moved on: another round of the agent
    committed (a new IMA offset) or its policy changed since it was issued. Nothing was judged;
    the challenge is used up and the agent asks for a new one."""

    code = "push_challenge_stale"
    http_status = 409


class PushRoundNotRun(RequestError):
    """A push post was not judged: the agent is paused or failed (an operator resumes it), or
    another round held it for longer than the post may wait (ask for a new challenge)."""

    code = "push_round_not_run"
    http_status = 409


# --- tokens: what the verifier's token service refuses ------------------------------------------


class TokenRequestInvalid(RequestError):
    """A token request (or session request) does not have the shape the API asks for."""

    code = "token_request_invalid"


class TokenSessionUnknown(RequestError):
    """No live token session for this agent under the key id the request names (expired, or
    replaced by a newer session, or dropped on revocation): open a new session."""

    code = "token_session_unknown"
    http_status = 401


class TokenRequestSignatureInvalid(RequestError):
    """A token request is not signed by the agent's session key."""

    code = "token_request_signature_invalid"
    http_status = 401


class TokenRequestReplayed(RequestError):
    """A token request's ``jti`` was seen before, or its ``iat`` is outside the window."""

    code = "token_request_replayed"
    http_status = 409


class TokenChallengeUnknown(RequestError):
    """A session request names a challenge this verifier did not issue, or one already used
    or expired."""

    code = "token_challenge_unknown"
    http_status = 403


class TokenSessionRefused(RequestError):
    """The TPM quote that should bind a session key does not verify with the agent's AK, does
    not bind this challenge and key, or comes from another boot than the last passed round."""

    code = "token_session_refused"
    http_status = 403


class AgentNotAttested(RequestError):
    """No token: the agent holds no valid lease now (failed, stale, paused, never attested)."""

    code = "agent_not_attested"
    http_status = 403


class TokenLocationUnavailable(RequestError):
    """No PoG token: the agent's last passed round has no passing location check, or its fix is
    older than the policy's maximum fix age."""

    code = "token_location_unavailable"
    http_status = 403


class FreshRoundFailed(RequestError):
    """A relying party's nonce asked for a fresh round, and that round did not pass."""

    code = "fresh_round_failed"
    http_status = 403


class CnfProofInvalid(RequestError):
    """A ``cnf`` key comes without a valid proof of possession (a signature by that key over
    the request)."""

    code = "cnf_proof_invalid"


class WorkloadHeaderMissing(RequestError):
    """A workload API request without the fixed ``Geoattest-Workload: true`` header."""

    code = "workload_header_missing"


class WorkloadUnidentified(RequestError):
    """The agent could not identify the calling process (no peer credentials, its executable
    unreadable, or larger than the agent hashes)."""

    code = "workload_unidentified"
    http_status = 403


class WorkloadChanged(RequestError):
    """The calling process exited, or executed another program, between its request and the
    answer: it gets nothing."""

    code = "workload_changed"
    http_status = 403


class KeyReleaseRefused(RequestError):
    """The key service refuses to release a key (``reason`` says why: a token check, the key's
    zones or workloads, or the proof of possession)."""

    code = "key_release_refused"
    http_status = 403

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class BundleUnreadable(RequestError):
    """A residency-proof bundle (or a key or CA file given with it) cannot be read at all: not
    a zip archive, too large, a path outside the archive, a file that is not what it says."""

    code = "bundle_unreadable"


class ConfigurationError(GeoattestError):
    """Settings or files given at start-up are unusable; raised before anything is served."""

    code = "configuration_error"


class PortInUse(ConfigurationError):
    """A service cannot listen: its address and port are taken (or not this host's)."""

    code = "port_in_use"


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


# --- parts we could not reach -------------------------------------------------------------------


class ReachabilityError(GeoattestError):
    code = "unreachable"
    http_status = 503


class AgentUnreachable(ReachabilityError):
    code = "agent_unreachable"


class AgentDeadlineExceeded(AgentUnreachable):
    """The agent did not finish answering within the round's total deadline (however slowly it
    dripped bytes)."""

    code = "agent_deadline_exceeded"


class AgentCertificateMismatch(AgentUnreachable):
    """The agent's TLS server certificate is not the one pinned at enrolment: not our agent."""

    code = "agent_certificate_mismatch"


class AgentProtocolMismatch(ReachabilityError):
    """The agent answered, but not with evidence: an error status, or a body that is not an
    evidence response (another version, or not an agent). A fault, never an integrity failure."""

    code = "agent_protocol_mismatch"


class AgentUrlInvalid(ReachabilityError):
    """The agent's registered API address cannot be used (it does not parse, or is not https)."""

    code = "agent_url_invalid"


class RegistrarUnreachable(ReachabilityError):
    code = "registrar_unreachable"


class RegistrarBusy(ReachabilityError):
    """The registrar holds as many open enrolments as it allows; enrol again later."""

    code = "registrar_busy"


class TpmUnavailable(ReachabilityError):
    """The TPM device or swtpm socket could not be opened or answered with a transport error."""

    code = "tpm_unavailable"


class TpmCommandFailed(ReachabilityError):
    """The TPM answered a command with an error code (out of object memory, lockout, no such key).

    A fault of the node's TPM or its state, not wrong evidence: retried, never revoked.
    ``rc`` is the TSS2 response code.
    """

    code = "tpm_command_failed"

    def __init__(self, message: str, *, rc: int) -> None:
        super().__init__(message)
        self.rc = rc


class GnssUnavailable(ReachabilityError):
    code = "gnss_unavailable"


class FreshRoundBusy(ReachabilityError):
    """A fresh round could not start in time: another round held the agent's lock (retry)."""

    code = "fresh_round_busy"


class VerifierUnreachable(ReachabilityError):
    """The verifier (token service, JWKS, status document) could not be reached."""

    code = "verifier_unreachable"


class PushRefused(ReachabilityError):
    """A push agent's call was refused by the verifier's push listener (``peer_code`` keeps the
    listener's error code); the agent retries at its next round, the lease decides the rest."""

    code = "push_refused"

    def __init__(self, message: str, peer_code: str | None = None) -> None:
        super().__init__(message)
        self.peer_code = peer_code


class DependencyUnavailable(ReachabilityError):
    """A service's own dependency (Redis, the database) is down, locked or timing out: the
    request was not carried out (nothing half-written); try again later."""

    code = "dependency_unavailable"


def error_from_code(code: str, message: str) -> GeoattestError:
    """Rebuild the error a remote service reported (``{"error": {"code", "message"}}``) as our
    class.

    Unknown codes (a newer server) become a plain ``RequestError`` carrying the message.
    """
    for cls in _all_subclasses(GeoattestError):
        if cls.code == code:
            try:
                return cls(message)
            except TypeError:  # a class that needs more than a message (e.g. a reason)
                break
    error = RequestError(f"{code}: {message}")
    return error


def _all_subclasses(cls: type[GeoattestError]) -> list[type[GeoattestError]]:
    found: list[type[GeoattestError]] = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found
