"""The push listener's API (ADR 19): challenges and evidence posts from push agents.

- ``POST /v1/push/challenge``: a fresh single-use challenge and the round to quote for;
- ``POST /v1/push/evidence``: the evidence answering it, judged and recorded as a round.

Served only by ``verifier push-serve`` over mTLS: the caller is the agent whose registered
certificate it presented (``PEER_CERTIFICATE`` in the WSGI environ, put there by the server after
the handshake), never what the body claims. No API key: the routes are ``@public`` to the
API-key guard, and ``PushRounds`` refuses any certificate that is not the named agent's.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from geoattest.access.guard import public
from geoattest.http import install_api_plumbing, parse_body
from geoattest.openapi import documented, install_openapi
from geoattest.wire_push import (
    PushChallengeRequest,
    PushChallengeView,
    PushEvidencePost,
    PushVerdictView,
)
from verifier.engine.fetch import MAX_EVIDENCE_BYTES
from verifier.engine.push import PushRounds

__all__ = ["PEER_CERTIFICATE", "create_push_app"]

PEER_CERTIFICATE = "geoattest.peer_certificate"  # DER of the mTLS client certificate
ROUNDS = "geoattest.push_rounds"
CHALLENGE_BODY_BYTES = 4096  # an agent id in JSON; evidence posts may be MAX_EVIDENCE_BYTES

blueprint = Blueprint("push", __name__)


def _rounds() -> PushRounds:
    rounds: PushRounds = current_app.extensions[ROUNDS]
    return rounds


def _peer() -> bytes | None:
    peer = request.environ.get(PEER_CERTIFICATE)
    return peer if isinstance(peer, bytes) else None


@blueprint.post("/v1/push/challenge")
@public
@documented(
    "A single-use challenge for a push agent, and the round to quote for (mTLS)",
    body=PushChallengeRequest,
    answer=PushChallengeView,
)
def challenge() -> Response:
    request.max_content_length = CHALLENGE_BODY_BYTES
    # No body is read for a caller that is no push agent.
    view = _rounds().challenge(_peer(), lambda: parse_body(PushChallengeRequest))
    return jsonify(view.model_dump(mode="json", exclude_defaults=True))


@blueprint.post("/v1/push/evidence")
@public
@documented(
    "A push agent's evidence for its challenge, judged and recorded as a round (mTLS)",
    body=PushEvidencePost,
    answer=PushVerdictView,
)
def evidence() -> Response:
    view = _rounds().post(_peer(), lambda: parse_body(PushEvidencePost))
    return jsonify(view.model_dump(mode="json"))


def create_push_app(rounds: PushRounds) -> Flask:
    """The push listener's Flask app around ``rounds`` (JSON errors, request ids)."""
    app = Flask("geoattest.verifier.push")
    install_api_plumbing(app)
    app.config["MAX_CONTENT_LENGTH"] = MAX_EVIDENCE_BYTES  # a first round carries the whole IMA log
    app.extensions[ROUNDS] = rounds
    app.register_blueprint(blueprint)
    install_openapi(app, title="geoattest verifier push listener", path_parameters={})
    return app
