"""The registrar's REST API under ``/v1``: views parse, call the ``Registry``, serialize.

Every agent id in a path is checked against ``wire.AGENT_ID_PATTERN`` before any view runs
(``_check_agent_id``), so no route can be reached with an id that the records could not hold.
Answers omit fields at their default (peers tolerate version skew, ``wire._Tolerant``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response, current_app, jsonify
from pydantic import BaseModel

from geoattest.access.guard import public, requires
from geoattest.access.keys import Role
from geoattest.errors import AgentIdInvalid
from geoattest.http import parse_body
from geoattest.identity_statement import IdentityFacts
from geoattest.openapi import documented
from geoattest.wire import (
    AGENT_ID_RULE,
    ActivateRequest,
    AgentList,
    AgentView,
    CredentialChallengeWire,
    EnrolRequest,
    EnrolResponse,
    GnssReceiverWire,
    LocationKeyChallengeView,
    LocationKeyWire,
    SigningKeyView,
    is_agent_id,
    receiver_canonical,
)
from registrar.enrol_body import read_enrolment
from registrar.identity import AgentIdentity
from registrar.registry import EnrolmentEvidence, LocationKey, Registry
from registrar.signing import RegistrarSigner

blueprint = Blueprint("registrar", __name__, url_prefix="/v1")


@blueprint.url_value_preprocessor
def _check_agent_id(_endpoint: str | None, values: dict[str, object] | None) -> None:
    """Refuse a path agent id that is not ``AGENT_ID_PATTERN`` (``..``, ``a?b``, non-ASCII…)."""
    agent_id = (values or {}).get("agent_id")
    if agent_id is not None and not (isinstance(agent_id, str) and is_agent_id(agent_id)):
        shown = ascii(str(agent_id)[:80])
        raise AgentIdInvalid(f"{shown} is not an agent id: {AGENT_ID_RULE}")


def _registry() -> Registry:
    registry: Registry = current_app.extensions["geoattest.registry"]
    return registry


@blueprint.post("/agents")
@public  # the TPM proves who enrols (credential activation)
@documented(
    "Enrol an agent: answers a credential challenge for its TPM",
    body=EnrolRequest,
    answer=EnrolResponse,
    status=201,
)
def enrol() -> tuple[Response, int]:
    body, digest = read_enrolment()
    issued = _registry().enrol(
        EnrolmentEvidence(
            agent_id=body.agent_id,
            ek_certificate=body.ek_certificate,
            ek_public=body.ek_public,
            ak_public=body.ak_public,
            agent_url=body.agent_url,
            tls_certificate=body.tls_certificate,
            # At enrolment the certification is fresh by the activation: no nonce applies.
            location_key=_location_key(body.location_key.model_copy(update={"nonce": None}))
            if body.location_key
            else None,
            gnss_receiver=receiver_canonical(body.gnss_receiver) if body.gnss_receiver else None,
            request_digest=digest,
        )
    )
    response = EnrolResponse(
        agent_id=issued.agent_id,
        state=issued.state,
        challenge=CredentialChallengeWire(
            credential_blob=issued.credential_blob,
            encrypted_secret=issued.encrypted_secret,
            expires_at=issued.expires_at,
        ),
    )
    return _json(response), 201


@blueprint.post("/agents/<agent_id>/activate")
@public
@documented(
    "Complete enrolment with proof of credential activation", body=ActivateRequest, answer=AgentView
)
def activate(agent_id: str) -> Response:
    body = parse_body(ActivateRequest)
    identity = _registry().activate(agent_id, bytes.fromhex(body.proof))
    return _json(_view(identity))


@blueprint.put("/agents/<agent_id>/location-key")
@public  # the registered AK's certification proves it
@documented(
    "Register or rotate the TPM-resident location key", body=LocationKeyWire, answer=AgentView
)
def put_location_key(agent_id: str) -> Response:
    """Register or rotate an active agent's location key; the AK's certification authorises it."""
    body = parse_body(LocationKeyWire)
    identity = _registry().register_location_key(agent_id, _location_key(body))
    return _json(_view(identity))


@blueprint.post("/agents/<agent_id>/location-key/challenge")
@public  # a nonce is no secret; only the AK's certification over it counts
@documented(
    "A single-use nonce for the next location-key certification",
    answer=LocationKeyChallengeView,
    status=201,
)
def location_key_challenge(agent_id: str) -> tuple[Response, int]:
    nonce, expires_at = _registry().location_key_challenge(agent_id)
    return _json(LocationKeyChallengeView(nonce=nonce.hex(), expires_at=expires_at)), 201


@blueprint.get("/agents")
@requires(Role.VIEWER)
@documented("Every enrolled agent", answer=AgentList)
def list_agents() -> Response:
    views = [_view(identity) for identity in _registry().list()]
    return _json(AgentList(agents=views))


@blueprint.get("/agents/<agent_id>")
@requires(Role.VIEWER)
@documented("One agent's identity and its signed statement", answer=AgentView)
def show_agent(agent_id: str) -> Response:
    return _json(_view(_registry().get(agent_id)))


@blueprint.delete("/agents/<agent_id>")
@requires(Role.ADMIN)
@documented("Delete an agent's identity record", status=204)
def delete_agent(agent_id: str) -> tuple[str, int]:
    _registry().delete(agent_id)
    return "", 204


def _json(answer: BaseModel) -> Response:
    return jsonify(answer.model_dump(mode="json", exclude_defaults=True))


def _location_key(wire: LocationKeyWire) -> LocationKey:
    return LocationKey(
        public=wire.public,
        certify_attest=wire.certify_attest,
        certify_signature=wire.certify_signature,
        nonce=bytes.fromhex(wire.nonce) if wire.nonce else None,
    )


def _signer() -> RegistrarSigner:
    signer: RegistrarSigner = current_app.extensions["geoattest.signer"]
    return signer


@blueprint.get("/signing-key")
@public  # a public key; pin it from a channel you trust, not from here
@documented("The registrar's public signing key", answer=SigningKeyView)
def signing_key() -> Response:
    signer = _signer()
    return _json(SigningKeyView(key_id=signer.key_id, public_key_pem=signer.public_pem()))


def _hex(value: bytes | None) -> str | None:
    return value.hex() if value is not None else None


def _view(identity: AgentIdentity) -> AgentView:
    statement, signature = _signer().sign(
        IdentityFacts(
            agent_id=identity.agent_id,
            state=identity.state,
            activated_at=identity.activated_at,
            ek_certificate=identity.ek_certificate,
            ek_public=identity.ek_public,
            ak_public=identity.ak_public,
            agent_url=identity.agent_url,
            tls_certificate=identity.tls_certificate,
            location_key_public=identity.location_key_public,
            location_key_certify_attest=identity.location_key_certify_attest,
            location_key_certify_signature=identity.location_key_certify_signature,
            gnss_receiver=identity.gnss_receiver,
        ),
        datetime.now(UTC),
    )
    return AgentView(
        identity_statement=statement,
        identity_signature=signature,
        agent_id=identity.agent_id,
        state=identity.state,
        ek_fingerprint=identity.ek_fingerprint,
        ek_certificate=identity.ek_certificate,
        ek_public=identity.ek_public,
        ak_public=identity.ak_public,
        ak_name=identity.ak_name.hex() if identity.ak_name else None,
        ek_anchor_subject=identity.ek_anchor_subject,
        ek_anchor_fingerprint=identity.ek_anchor_fingerprint,
        tpm_manufacturer=identity.tpm_manufacturer,
        tpm_model=identity.tpm_model,
        purchase_order=identity.purchase_order,
        asset_tag=identity.asset_tag,
        enrolled_at=identity.enrolled_at,
        activated_at=identity.activated_at,
        agent_url=identity.agent_url,
        tls_certificate=identity.tls_certificate,
        location_key_public=identity.location_key_public,
        location_key_certify_attest=identity.location_key_certify_attest,
        location_key_certify_signature=identity.location_key_certify_signature,
        location_key_nonce=identity.location_key_nonce.hex()
        if identity.location_key_nonce
        else None,
        gnss_receiver=GnssReceiverWire.model_validate_json(identity.gnss_receiver)
        if identity.gnss_receiver
        else None,
    )
