"""The one exception hierarchy of geoattest.

Every error a client or a piece of evidence can cause has a stable snake_case ``code`` and the HTTP
status it maps to. Three branches, mirroring the design's trust rules:

- ``RequestError``: the caller sent something we refuse (4xx at the API edge).
- ``IntegrityError``: evidence is wrong. In a verifier round this fails the agent and revokes.
- ``ReachabilityError``: a part could not be reached (agent, TPM, Redis, DB). Retry, never revoke.

The package is a leaf: it imports nothing else of the project. Its modules hold the branches;
every class is imported from here (``from geoattest.errors import X``).
"""

from __future__ import annotations

from geoattest.errors._base import (
    GeoattestError,
)
from geoattest.errors.configuration import (
    ConfigurationError,
    PortInUse,
)
from geoattest.errors.integrity import (
    BootLogInvalid,
    BootLogMismatch,
    BootLogMissing,
    BootPcrMismatch,
    BundleInvalid,
    CertifyInvalid,
    ClockNotMonotonic,
    CredentialActivationRefused,
    EvidenceMalformed,
    GnssReceiverChanged,
    GnssReceiverUnidentified,
    ImaEntryNotAllowed,
    ImaLogInvalid,
    ImaLogRewound,
    ImaPcrMismatch,
    IntegrityError,
    LocationEvidenceInvalid,
    LocationImplausible,
    LocationMissing,
    LocationNonceMismatch,
    LocationOutsideZone,
    LocationStale,
    LogEntryInvalid,
    LogProofInvalid,
    NonceMismatch,
    PcrDigestMismatch,
    PcrSelectionMismatch,
    ProofInvalid,
    QuoteSignatureInvalid,
    RegistrarAnswerInvalid,
    SignatureInvalid,
    TpmFormatError,
)
from geoattest.errors.reachability import (
    AgentCertificateMismatch,
    AgentDeadlineExceeded,
    AgentProtocolMismatch,
    AgentUnreachable,
    AgentUrlInvalid,
    DependencyUnavailable,
    FreshRoundBusy,
    GnssUnavailable,
    PushRefused,
    ReachabilityError,
    RegistrarBusy,
    RegistrarUnreachable,
    TpmCommandFailed,
    TpmUnavailable,
    VerifierUnreachable,
)
from geoattest.errors.refused import (
    ActivationFailed,
    AgentAlreadyVerified,
    AgentCertificateInvalid,
    AgentIdInvalid,
    AgentIdTaken,
    AgentNotActive,
    AkInvalid,
    ApiKeyInvalid,
    ApiKeyRequired,
    BodyTooLarge,
    Conflict,
    EkAlreadyEnrolled,
    EkMismatch,
    EkNotPinned,
    EkUntrusted,
    EncodingUnsupported,
    JoseMalformed,
    LocationKeyInvalid,
    MalformedRequest,
    NotFound,
    PcrBankUnknown,
    PolicyInUse,
    PolicyInvalid,
    PolicyKeyRequired,
    PolicyNotSigned,
    PolicySignatureInvalid,
    PushCertificateRefused,
    PushChallengeRateLimited,
    PushChallengeStale,
    PushChallengeUnknown,
    PushRoundNotRun,
    RequestError,
    RoleInsufficient,
    Unauthorized,
    ZoneGeometryInvalid,
    ZoneInvalid,
)
from geoattest.errors.token_refusals import (
    AgentNotAttested,
    BundleUnreadable,
    CnfProofInvalid,
    FreshRoundFailed,
    KeyReleaseRefused,
    TokenChallengeUnknown,
    TokenLocationUnavailable,
    TokenRequestInvalid,
    TokenRequestReplayed,
    TokenRequestSignatureInvalid,
    TokenSessionRefused,
    TokenSessionUnknown,
    WorkloadChanged,
    WorkloadHeaderMissing,
    WorkloadUnidentified,
)

__all__ = [
    "ActivationFailed",
    "AgentAlreadyVerified",
    "AgentCertificateInvalid",
    "AgentCertificateMismatch",
    "AgentDeadlineExceeded",
    "AgentIdInvalid",
    "AgentIdTaken",
    "AgentNotActive",
    "AgentNotAttested",
    "AgentProtocolMismatch",
    "AgentUnreachable",
    "AgentUrlInvalid",
    "AkInvalid",
    "ApiKeyInvalid",
    "ApiKeyRequired",
    "BodyTooLarge",
    "BootLogInvalid",
    "BootLogMismatch",
    "BootLogMissing",
    "BootPcrMismatch",
    "BundleInvalid",
    "BundleUnreadable",
    "CertifyInvalid",
    "ClockNotMonotonic",
    "CnfProofInvalid",
    "ConfigurationError",
    "Conflict",
    "CredentialActivationRefused",
    "DependencyUnavailable",
    "EkAlreadyEnrolled",
    "EkMismatch",
    "EkNotPinned",
    "EkUntrusted",
    "EncodingUnsupported",
    "EvidenceMalformed",
    "FreshRoundBusy",
    "FreshRoundFailed",
    "GeoattestError",
    "GnssReceiverChanged",
    "GnssReceiverUnidentified",
    "GnssUnavailable",
    "ImaEntryNotAllowed",
    "ImaLogInvalid",
    "ImaLogRewound",
    "ImaPcrMismatch",
    "IntegrityError",
    "JoseMalformed",
    "KeyReleaseRefused",
    "LocationEvidenceInvalid",
    "LocationImplausible",
    "LocationKeyInvalid",
    "LocationMissing",
    "LocationNonceMismatch",
    "LocationOutsideZone",
    "LocationStale",
    "LogEntryInvalid",
    "LogProofInvalid",
    "MalformedRequest",
    "NonceMismatch",
    "NotFound",
    "PcrBankUnknown",
    "PcrDigestMismatch",
    "PcrSelectionMismatch",
    "PolicyInUse",
    "PolicyInvalid",
    "PolicyKeyRequired",
    "PolicyNotSigned",
    "PolicySignatureInvalid",
    "PortInUse",
    "ProofInvalid",
    "PushCertificateRefused",
    "PushChallengeRateLimited",
    "PushChallengeStale",
    "PushChallengeUnknown",
    "PushRefused",
    "PushRoundNotRun",
    "QuoteSignatureInvalid",
    "ReachabilityError",
    "RegistrarAnswerInvalid",
    "RegistrarBusy",
    "RegistrarUnreachable",
    "RequestError",
    "RoleInsufficient",
    "SignatureInvalid",
    "TokenChallengeUnknown",
    "TokenLocationUnavailable",
    "TokenRequestInvalid",
    "TokenRequestReplayed",
    "TokenRequestSignatureInvalid",
    "TokenSessionRefused",
    "TokenSessionUnknown",
    "TpmCommandFailed",
    "TpmFormatError",
    "TpmUnavailable",
    "Unauthorized",
    "VerifierUnreachable",
    "WorkloadChanged",
    "WorkloadHeaderMissing",
    "WorkloadUnidentified",
    "ZoneGeometryInvalid",
    "ZoneInvalid",
    "error_from_code",
]


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
