"""The verifier's token API: JWKS, token sessions, tokens, the revocation status, key rotation.

- ``GET /.well-known/jwks.json`` (anyone): the token keys, next, active, and retired ones until
  their tokens expired;
- ``GET /v1/tokens/status`` (anyone): the signed revocation status (``application/jwt``);
- ``POST /v1/token-sessions/challenge``, ``POST /v1/token-sessions`` (agents): a single-use
  challenge, then a session whose quote binds it and the session key;
- ``POST /v1/tokens`` (agents): a token for a request signed by the session key (a compact JWS
  body, ``application/jose``);
- ``GET /v1/tokens`` (operators): tokens issued in a window (``agent_id``, ``from``, ``to``,
  ``limit``); ``POST /v1/tokens/keys/rotate`` (operators): the next key becomes active.

Agents authenticate with their TPM-bound session (ADR 8), not with an operator's API key, so
their routes are ``@public`` to the API-key guard; listing tokens (bearer credentials until they
expire) and rotating keys need an ``admin`` API key.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, current_app, jsonify, request

from geoattest.access.guard import public, recorded_by, requires
from geoattest.access.keys import Role
from geoattest.errors import MalformedRequest
from geoattest.http import parse_body
from geoattest.openapi import documented
from geoattest.wire_tokens import (
    TokenChallengeRequest,
    TokenChallengeView,
    TokenSessionRequest,
    TokenSessionView,
    TokenView,
)
from verifier.signing.keyring import Keyring
from verifier.storage.tokens import MAX_PAGE, StoredToken, TokenLedger
from verifier.tokens.service import TokenService
from verifier.tokens.status import StatusPublisher

__all__ = ["KEYRING", "LEDGER", "SERVICE", "STATUS", "blueprint"]

SERVICE = "geoattest.tokens"
KEYRING = "geoattest.token_keys"
LEDGER = "geoattest.token_ledger"
STATUS = "geoattest.token_status"
MAX_REQUEST_CHARS = 16 * 1024
JWKS_MAX_AGE = 300  # the next key is published a rotation ahead, so caching this long is safe

blueprint = Blueprint("tokens", __name__)


def _service() -> TokenService:
    service: TokenService = current_app.extensions[SERVICE]
    return service


def _keyring() -> Keyring:
    keyring: Keyring = current_app.extensions[KEYRING]
    return keyring


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@blueprint.get("/.well-known/jwks.json")
@public
@documented("The token keys (JWKS): next, active, and retired until their tokens expired")
def jwks() -> Response:
    response = jsonify(_keyring().jwks(_now()))
    response.headers["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE}"
    return response


@blueprint.get("/v1/tokens/status")
@public
@documented("The signed revocation status of tokens already issued (application/jwt)")
def status() -> Response:
    publisher: StatusPublisher = current_app.extensions[STATUS]
    response = current_app.response_class(publisher.document(), mimetype="application/jwt")
    response.headers["Cache-Control"] = "no-cache"
    return response


@blueprint.post("/v1/token-sessions/challenge")
@public
@documented(
    "A single-use challenge for an agent's token session",
    body=TokenChallengeRequest,
    answer=TokenChallengeView,
)
def session_challenge() -> Response:
    body = parse_body(TokenChallengeRequest)
    view = _service().challenge(body.agent_id)
    return jsonify(view.model_dump(mode="json"))


@blueprint.post("/v1/token-sessions")
@public
@documented(
    "A token session whose AK quote binds the challenge and the session key",
    body=TokenSessionRequest,
    answer=TokenSessionView,
    status=201,
)
def open_session() -> tuple[Response, int]:
    view = _service().open_session(parse_body(TokenSessionRequest))
    return jsonify(view.model_dump(mode="json")), 201


@blueprint.post("/v1/tokens")
@public
@recorded_by("verifier_tokens and the transparency log, in the transaction that issues")
@documented(
    "A PoR/PoG token for a request signed by the session key (a compact JWS, application/jose)",
    answer=TokenView,
    status=201,
)
def issue() -> tuple[Response, int]:
    signed = request.get_data(as_text=True)
    if not signed or len(signed) > MAX_REQUEST_CHARS:
        raise MalformedRequest("the body must be a compact JWS token request (application/jose)")
    view = _service().issue(signed)
    return jsonify(view.model_dump(mode="json")), 201


@blueprint.get("/v1/tokens")
@requires(Role.ADMIN)
@documented("Tokens issued in a window (bearer credentials until they expire)")
def issued() -> Response:
    """Operator-only: the tokens are bearer credentials until they expire."""
    ledger: TokenLedger = current_app.extensions[LEDGER]
    limit = _int_arg("limit", MAX_PAGE)
    tokens = ledger.issued(
        agent_id=request.args.get("agent_id"),
        since=_time_arg("from"),
        until=_time_arg("to"),
        limit=limit,
    )
    return jsonify({"tokens": [_token_json(token) for token in tokens]})


@blueprint.post("/v1/tokens/keys/rotate")
@requires(Role.ADMIN)
@documented("Rotate the token keys: the next key becomes active")
def rotate() -> Response:
    active = _keyring().rotate(_now())
    return jsonify({"active": active, "keys": _keyring().jwks(_now())["keys"]})


def _token_json(token: StoredToken) -> dict[str, object]:
    return {
        "jti": token.jti,
        "agent_id": token.agent_id,
        "type": token.type,
        "audience": token.audience,
        "workload_sha256": token.workload_sha256.hex(),
        "issued_at": token.issued_at.isoformat(),
        "expires_at": token.expires_at.isoformat(),
        "record_seq": token.record_seq,
        "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
        "token": token.token,
    }


def _int_arg(name: str, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return high
    if not raw.isdigit() or not 1 <= int(raw) <= high:
        raise MalformedRequest(f"{name} must be an integer in 1..{high}")
    return int(raw)


def _time_arg(name: str) -> dt.datetime | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as e:
        raise MalformedRequest(f"{name} must be an ISO 8601 time") from e
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
