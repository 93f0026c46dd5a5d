"""The agent's API for the verifier, under ``/v1`` (served only over mTLS, see ``agent.server``).

``POST /v1/evidence`` takes an ``EvidenceRequest`` and answers an ``EvidenceResponse``; errors are
``{"error": {"code", "message"}}``: 400 ``malformed_request`` for a bad body, 503
``tpm_unavailable`` / ``tpm_command_failed`` when the TPM cannot quote (retry, never revoke).
``GET /metrics`` serves the agent's Prometheus metrics (``agent.metrics``), over the same mTLS.
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, current_app, jsonify
from prometheus_client import REGISTRY, generate_latest

from agent.evidence import EvidenceService
from agent.metrics import EVIDENCE_REQUESTS, EVIDENCE_SECONDS, IMA_ENTRIES_SENT
from geoattest.errors import GeoattestError
from geoattest.http import parse_body
from geoattest.openapi import documented
from geoattest.wire import EvidenceRequest, EvidenceResponse

__all__ = ["EVIDENCE_SERVICE", "blueprint", "metrics_blueprint"]

EVIDENCE_SERVICE = "geoattest.evidence"

blueprint = Blueprint("agent", __name__, url_prefix="/v1")
metrics_blueprint = Blueprint("agent_metrics", __name__)


def _service() -> EvidenceService:
    service: EvidenceService = current_app.extensions[EVIDENCE_SERVICE]
    return service


@blueprint.post("/evidence")
@documented(
    "One round's evidence: quote, PCRs, IMA entries", body=EvidenceRequest, answer=EvidenceResponse
)
def evidence() -> Response:
    started = time.perf_counter()
    try:
        request = parse_body(EvidenceRequest)
        answer = _service().collect(request)
    except GeoattestError as e:
        EVIDENCE_REQUESTS.labels(e.code).inc()
        raise
    EVIDENCE_SECONDS.observe(time.perf_counter() - started)
    EVIDENCE_REQUESTS.labels("ok").inc()
    IMA_ENTRIES_SENT.inc(len(answer.ima.lines))
    return current_app.response_class(
        answer.model_dump_json(exclude_defaults=True), mimetype="application/json"
    )


@metrics_blueprint.get("/metrics")
@documented("Prometheus metrics of this agent (text format)")
def metrics() -> Response:
    """Prometheus text format (this process: the agent is one process, see ``agent.server``)."""
    return Response(generate_latest(REGISTRY), content_type="text/plain; version=0.0.4")


@blueprint.get("/healthz")
@documented("Liveness")
def healthz() -> Response:
    return jsonify({"status": "ok"})
