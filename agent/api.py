"""The agent's API for the verifier, under ``/v1`` (served only over mTLS, see ``agent.server``).

``POST /v1/evidence`` takes an ``EvidenceRequest`` and answers an ``EvidenceResponse``; errors are
``{"error": {"code", "message"}}``: 400 ``malformed_request`` for a bad body, 503
``tpm_unavailable`` / ``tpm_command_failed`` when the TPM cannot quote (retry, never revoke).
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from agent.evidence import EvidenceService
from geoattest.http import parse_body
from geoattest.openapi import documented
from geoattest.wire import EvidenceRequest, EvidenceResponse

__all__ = ["EVIDENCE_SERVICE", "blueprint"]

EVIDENCE_SERVICE = "geoattest.evidence"

blueprint = Blueprint("agent", __name__, url_prefix="/v1")


def _service() -> EvidenceService:
    service: EvidenceService = current_app.extensions[EVIDENCE_SERVICE]
    return service


@blueprint.post("/evidence")
@documented(
    "One round's evidence: quote, PCRs, IMA entries", body=EvidenceRequest, answer=EvidenceResponse
)
def evidence() -> Response:
    request = parse_body(EvidenceRequest)
    answer = _service().collect(request)
    return current_app.response_class(
        answer.model_dump_json(exclude_defaults=True), mimetype="application/json"
    )


@blueprint.get("/healthz")
@documented("Liveness")
def healthz() -> Response:
    return jsonify({"status": "ok"})
