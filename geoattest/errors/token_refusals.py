"""What the token service, the workload API and key release refuse (``RequestError``s)."""

from __future__ import annotations

from geoattest.errors.refused import RequestError

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
