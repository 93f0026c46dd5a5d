"""The key service's HTTP API (``geoattest keys serve``): ``POST /v1/keys/<id>/release``.

``GET /metrics`` counts releases by outcome and reason code (``geoattest_key_releases_total``).
The key service holds no API keys (it trusts PoG tokens alone), so that route is open; it names
no key, agent or token, only counts (``docs/metrics.md``).

The view reads the token (``Authorization: PoG <token>``) and the proof (``Geoattest-PoP``),
asks ``Releaser``, records the outcome, and answers ``{"key_id", "jwe", "agent_id",
"record_seq"}`` or the refusal (``403 key_release_refused``, the check named in the message).
"""

from __future__ import annotations

import datetime as dt
import logging

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from prometheus_client import REGISTRY, Counter, generate_latest

from geoattest.db import check_private_database, make_engine, migrate
from geoattest.errors import KeyReleaseRefused, MalformedRequest
from geoattest.http import install_api_plumbing
from geoattest.settings import Settings
from geoattest.token_sources import VerifierTrust
from keyrelease.keystore import KeyStore, check_key_id
from keyrelease.ledger import ReleaseEntry, ReleaseLedger
from keyrelease.log_forward import AuditForwarder
from keyrelease.release import Releaser

__all__ = ["FORWARDER", "POP_HEADER", "create_app"]

log = logging.getLogger(__name__)

FORWARDER = "geoattest.keyrelease.log_forwarder"

POP_HEADER = "Geoattest-PoP"
_PARTS = "geoattest.keyrelease"

blueprint = Blueprint("keys", __name__, url_prefix="/v1")
metrics_blueprint = Blueprint("keys_metrics", __name__)

KEY_RELEASES = Counter(
    "geoattest_key_releases",
    "Key release requests, by outcome (released, refused) and reason code (empty if released).",
    ["outcome", "reason"],
)


class _Parts:
    def __init__(self, store: KeyStore, releaser: Releaser, ledger: ReleaseLedger) -> None:
        self.store, self.releaser, self.ledger = store, releaser, ledger


def create_app(settings: Settings) -> Flask:
    engine = make_engine(settings.keys_database_url, background_checkpoints=True)
    check_private_database(settings.keys_database_url)
    migrate(engine)
    trust = VerifierTrust(settings.verifier_url, status_refresh=settings.round_interval_seconds)
    app = Flask("geoattest.keys")
    install_api_plumbing(app)
    ledger = ReleaseLedger(engine)
    app.extensions[_PARTS] = _Parts(
        KeyStore(settings.keys_dir),
        Releaser(audience=settings.keys_audience, trust=trust),
        ledger,
    )
    if settings.keys_log_api_key is not None:
        forwarder = AuditForwarder(
            ledger,
            verifier_url=settings.verifier_url,
            api_key=settings.keys_log_api_key.get_secret_value(),
            actor=f"geoattest-keys:{settings.keys_audience}",
        )
        forwarder.start()
        app.extensions[FORWARDER] = forwarder
    else:
        log.warning(
            "GEOATTEST_KEYS_LOG_API_KEY is unset: releases and refusals are kept in the key "
            "service's ledger only, not sent to the verifier's transparency log"
        )
    app.extensions["geoattest.engine"] = engine
    app.register_blueprint(blueprint)
    app.register_blueprint(metrics_blueprint)
    return app


def _record(ledger: ReleaseLedger, entry: ReleaseEntry) -> None:
    ledger.record(entry)
    KEY_RELEASES.labels(entry.outcome, entry.reason or "").inc()


@blueprint.post("/keys/<key_id>/release")
def release(key_id: str) -> Response:
    parts: _Parts = current_app.extensions[_PARTS]
    check_key_id(key_id)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    proof = request.headers.get(POP_HEADER, "")
    now = dt.datetime.now(dt.UTC)
    if scheme != "PoG" or not token or not proof:
        _record(
            parts.ledger, ReleaseEntry(at=now, key_id=key_id, outcome="refused", reason="no_token")
        )
        raise MalformedRequest(f"send 'Authorization: PoG <token>' and a {POP_HEADER} proof")
    try:
        key = parts.store.get(key_id)
        done = parts.releaser.release(key, token.strip(), proof.strip())
    except KeyReleaseRefused as e:
        _record(
            parts.ledger,
            ReleaseEntry(
                at=now, key_id=key_id, outcome="refused", reason=e.reason, message=e.message
            ),
        )
        raise
    except Exception as e:  # unknown key included: recorded, then answered as it is
        code = getattr(e, "code", "internal_error")
        _record(
            parts.ledger, ReleaseEntry(at=now, key_id=key_id, outcome="refused", reason=str(code))
        )
        raise
    verified = done.token
    _record(
        parts.ledger,
        ReleaseEntry(
            at=now,
            key_id=key_id,
            outcome="released",
            agent_id=verified.agent_id,
            token_jti=verified.jti,
            workload_sha256=verified.workload_sha256,
            zone_id=verified.geo.zone_id if verified.geo else None,
            record_seq=verified.record_seq,
        ),
    )
    return jsonify(
        {
            "key_id": key_id,
            "jwe": done.wrapped,
            "agent_id": verified.agent_id,
            "record_seq": verified.record_seq,
        }
    )


@metrics_blueprint.get("/metrics")
def metrics() -> Response:
    return Response(generate_latest(REGISTRY), content_type="text/plain; version=0.0.4")


@blueprint.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok", "service": "keys"})
