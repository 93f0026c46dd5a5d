"""Requests we refuse (``RequestError``, 4xx at the API edge): enrolment, policies, zones,
access, push."""

from __future__ import annotations

from geoattest.errors._base import GeoattestError

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
