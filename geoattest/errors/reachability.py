"""Parts we could not reach (``ReachabilityError``): retry, never revoke."""

from __future__ import annotations

from geoattest.errors._base import GeoattestError

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
