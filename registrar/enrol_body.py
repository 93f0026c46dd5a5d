"""The enrolment request as it arrived: its JSON object (what the proof binds) and its fields.

The activation proof covers ``wire.enrolment_digest`` of the JSON object the agent sent, so the
registrar digests the object it parsed off the wire, not a re-serialisation of the fields it
understood: a field that this version does not know is still covered, and ignored. The body
must be a JSON object without duplicate names (whose meaning would depend on the parser),
without NaN or Infinity, and representable in RFC 8785 canonical JSON.
"""

from __future__ import annotations

import json

from flask import request

from geoattest.errors import AgentIdInvalid, MalformedRequest
from geoattest.http import validate_json
from geoattest.wire import AGENT_ID_RULE, EnrolRequest, JsonValue, enrolment_digest, is_agent_id

__all__ = ["read_enrolment"]


def read_enrolment() -> tuple[EnrolRequest, bytes]:
    """The request body as an ``EnrolRequest`` and its enrolment digest.

    Raises ``MalformedRequest`` (not a JSON object, duplicate names, NaN/Infinity, nested too
    deep, not canonicalisable, fields invalid) or ``AgentIdInvalid``.
    """
    if not request.is_json:
        raise MalformedRequest(
            "request body must be a JSON object (Content-Type: application/json)"
        )
    body = _json_object(request.get_data(cache=True))
    agent_id = body.get("agent_id")
    if isinstance(agent_id, str) and not is_agent_id(agent_id):
        raise AgentIdInvalid(f"agent_id {_shown(agent_id)} is not an agent id: {AGENT_ID_RULE}")
    try:
        digest = enrolment_digest(body)
    except (ValueError, RecursionError) as e:
        raise MalformedRequest(f"request body has no canonical JSON form (RFC 8785): {e}") from e
    return validate_json(EnrolRequest, body), digest


def _json_object(raw: bytes) -> dict[str, JsonValue]:
    try:
        body: JsonValue = json.loads(
            raw, object_pairs_hook=_unique_names, parse_constant=_no_constants
        )
    except RecursionError as e:
        raise MalformedRequest("request body is nested too deeply") from e
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError and ours below
        raise MalformedRequest(f"request body is not valid JSON: {e}") from e
    if not isinstance(body, dict):
        raise MalformedRequest("request body must be a JSON object")
    return body


def _unique_names(pairs: list[tuple[str, JsonValue]]) -> dict[str, JsonValue]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        repeated = sorted({name for name in names if names.count(name) > 1})
        raise ValueError(f"duplicate names in an object: {', '.join(map(_shown, repeated))}")
    return dict(pairs)


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _shown(value: str) -> str:
    """``value`` quoted for a message, bounded and ASCII-escaped (it comes from the client)."""
    return ascii(value[:80]) + ("…" if len(value) > 80 else "")
