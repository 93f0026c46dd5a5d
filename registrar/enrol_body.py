"""The enrolment request as it arrived: its JSON object (what the proof binds) and its fields.

The activation proof covers ``wire.enrolment_digest`` of the JSON object the agent sent, so the
registrar digests the object it parsed off the wire, not a re-serialisation of the fields it
understood: a field that this version does not know is still covered, and ignored. The body is
read by the one strict reader (``geoattest.strict_json``: no duplicate names, NaN, lone
surrogates, unsafe integers or deep nesting), so it is always representable in RFC 8785
canonical JSON.
"""

from __future__ import annotations

from geoattest.errors import AgentIdInvalid, MalformedRequest
from geoattest.http import read_json_object, validate_json
from geoattest.wire import AGENT_ID_RULE, EnrolRequest, enrolment_digest, is_agent_id

__all__ = ["read_enrolment"]


def read_enrolment() -> tuple[EnrolRequest, bytes]:
    """The request body as an ``EnrolRequest`` and its enrolment digest.

    Raises ``MalformedRequest`` (refused by ``geoattest.strict_json``, not canonicalisable,
    fields invalid) or ``AgentIdInvalid``.
    """
    body = read_json_object()
    agent_id = body.get("agent_id")
    if isinstance(agent_id, str) and not is_agent_id(agent_id):
        raise AgentIdInvalid(f"agent_id {_shown(agent_id)} is not an agent id: {AGENT_ID_RULE}")
    try:
        digest = enrolment_digest(body)
    except (ValueError, RecursionError) as e:
        raise MalformedRequest(f"request body has no canonical JSON form (RFC 8785): {e}") from e
    return validate_json(EnrolRequest, body), digest


def _shown(value: str) -> str:
    """``value`` quoted for a message, bounded and ASCII-escaped (it comes from the client)."""
    return ascii(value[:80]) + ("…" if len(value) > 80 else "")
