"""The registrar's wire: enrolment, activation, location keys, GNSS receivers, and its views."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, TypeAlias

import rfc8785
from pydantic import (
    Field,
)

from geoattest.wire._base import (
    AgentId,
    B64Bytes,
    _Wire,
)

LOCATION_KEY_NONCE_BYTES = 32
LocationKeyNonceHex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class LocationKeyWire(_Wire):
    """The TPM-resident location key and its TPM2_Certify by the AK (``POST /v1/agents`` field,
    ``PUT /v1/agents/<id>/location-key`` body).

    The certify's qualifying data is ``location_key_qualifying_data(agent_id, ak_name, nonce)``.
    At enrolment there is no ``nonce`` (the credential activation makes the request fresh); a
    later registration or rotation carries the nonce of a challenge the registrar just issued
    (``POST /v1/agents/<id>/location-key/challenge``), so an old certification cannot be
    registered again.
    """

    public: B64Bytes  # marshalled TPM2B_PUBLIC of the location key
    certify_attest: B64Bytes  # TPMS_ATTEST of TPM2_Certify(location key, AK)
    certify_signature: B64Bytes  # TPMT_SIGNATURE over it by the AK
    nonce: LocationKeyNonceHex | None = None  # the registrar's challenge it answers (rotation)


class LocationKeyChallengeView(_Wire):
    """A single-use registrar nonce for the next location-key certification of one agent."""

    nonce: LocationKeyNonceHex
    expires_at: datetime


MAX_RECEIVER_TEXTS = 16  # ``geofence.receiver.MAX_RECEIVER_TEXTS``
_ReceiverText = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[ -~]+$")]


class GnssReceiverWire(_Wire):
    """The GNSS receiver an agent enrols with (``geofence.GnssReceiver``): the source kind, the
    receiver's identity banners as its fixes carry them (none: *unidentified*), and the device
    it is read from (informational: not compared per round). Printable ASCII only, bounded."""

    source: Annotated[str, Field(pattern=r"^(file|serial|gpsd)$")]
    texts: Annotated[list[_ReceiverText], Field(max_length=MAX_RECEIVER_TEXTS)] = Field(
        default_factory=list
    )
    device: Annotated[str, Field(min_length=1, max_length=512, pattern=r"^[ -~]+$")] | None = None


def receiver_canonical(receiver: GnssReceiverWire) -> bytes:
    """RFC 8785 canonical JSON of ``receiver`` (defaults omitted): what the registrar stores and
    its identity statement names by SHA-256."""
    return rfc8785.dumps(receiver.model_dump(mode="json", exclude_defaults=True))


class EnrolRequest(_Wire):
    """What an agent posts to ``POST /v1/agents`` (Keylime-style registration)."""

    agent_id: AgentId
    ek_certificate: B64Bytes  # DER (or PEM) as read from the TPM's NV index
    ek_public: B64Bytes  # marshalled TPM2B_PUBLIC of the EK recreated from the TCG template
    ak_public: B64Bytes  # marshalled TPM2B_PUBLIC of the attestation key
    agent_url: (
        Annotated[str, Field(pattern=r"^https://[^\s/]+(:\d+)?(/\S*)?$", max_length=512)] | None
    ) = None  # the agent's evidence API: https only (mTLS), optionally with a path prefix
    tls_certificate: B64Bytes | None = None  # DER of the agent API's server certificate (pinned)
    location_key: LocationKeyWire | None = None  # certified by ``ak_public`` (geofencing nodes)
    # The GNSS receiver the node reads (geofencing nodes): bound by the activation proof.
    gnss_receiver: GnssReceiverWire | None = None


class CredentialChallengeWire(_Wire):
    """MakeCredential output for the AK name, encrypted to the EK."""

    credential_blob: B64Bytes  # marshalled TPM2B_ID_OBJECT
    encrypted_secret: B64Bytes  # marshalled TPM2B_ENCRYPTED_SECRET
    expires_at: datetime


class EnrolResponse(_Wire):
    agent_id: AgentId
    state: str
    challenge: CredentialChallengeWire


class ActivateRequest(_Wire):
    """Proof that the agent's TPM recovered the secret: ``activation_proof`` as lowercase hex."""

    proof: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class AgentView(_Wire):
    """An agent's identity record as the registrar shows it (no secrets)."""

    agent_id: AgentId
    state: str
    ek_fingerprint: str
    ek_certificate: B64Bytes
    ek_public: B64Bytes
    ak_public: B64Bytes | None
    ak_name: str | None
    ek_anchor_subject: str
    ek_anchor_fingerprint: str
    tpm_manufacturer: str | None
    tpm_model: str | None
    purchase_order: str | None
    asset_tag: str | None
    enrolled_at: datetime
    activated_at: datetime | None
    agent_url: str | None = None  # where the verifier reaches the agent's evidence API
    tls_certificate: B64Bytes | None = None  # the agent API's server certificate, to pin
    location_key_public: B64Bytes | None = None  # TPM2B_PUBLIC of the TPM-resident location key
    location_key_certify_attest: B64Bytes | None = None  # its TPM2_Certify by the AK (TPMS_ATTEST)
    location_key_certify_signature: B64Bytes | None = None  # and the AK's TPMT_SIGNATURE over it
    # The registrar challenge the certification answers (hex; absent for one made at enrolment).
    # Not in the signed statement: the certification it covers binds it already.
    location_key_nonce: LocationKeyNonceHex | None = None
    # The GNSS receiver recorded at enrolment (in the signed statement as its canonical SHA-256).
    gnss_receiver: GnssReceiverWire | None = None
    # The registrar's signed statement of these facts (``geoattest.identity_statement``).
    identity_statement: B64Bytes | None = None
    identity_signature: B64Bytes | None = None


class SigningKeyView(_Wire):
    """The registrar's public signing key (pin it from a channel you trust)."""

    key_id: str  # RFC 7638 thumbprint
    public_key_pem: str


class HealthView(_Wire):
    """``GET /v1/healthz`` of a service: it answers, nothing more (no dependency is probed)."""

    status: str
    service: str


class AgentList(_Wire):
    agents: list[AgentView]


JsonValue: TypeAlias = (
    bool | int | float | str | Sequence["JsonValue"] | Mapping[str, "JsonValue"] | None
)
"""A value parsed from JSON (``json.loads``) or ready for it."""

ENROLMENT_DIGEST_PREFIX = b"geoattest-enrolment-v1\x00"
ACTIVATION_PROOF_PREFIX = b"geoattest-activate-v3\x00"


def enrolment_body(request: EnrolRequest) -> dict[str, JsonValue]:
    """The JSON object an agent sends for ``request`` (fields at their default omitted)."""
    return request.model_dump(mode="json", exclude_defaults=True)


def enrolment_digest(body: Mapping[str, JsonValue]) -> bytes:
    """``SHA-256("geoattest-enrolment-v1" ‖ 0x00 ‖ JCS(body))``: the digest the proof binds.

    ``body`` is the enrolment request as a JSON object, exactly as the agent sent it and as the
    registrar parsed it off the wire (fields this version does not know included), and JCS is
    RFC 8785 canonical JSON: the bytes do not depend on any library's rendering. Raises
    ``ValueError`` (``rfc8785.CanonicalizationError``) for values JSON cannot carry exactly:
    NaN or infinite numbers, integers beyond 2**53, lone surrogates, non-string keys.
    """
    return hashlib.sha256(ENROLMENT_DIGEST_PREFIX + rfc8785.dumps(body)).digest()


def activation_proof(secret: bytes, request_digest: bytes) -> bytes:
    """``HMAC-SHA256(secret, "geoattest-activate-v3" ‖ 0x00 ‖ enrolment_digest(request))``.

    ``secret`` is the credential the TPM recovered with ActivateCredential. The proof shows the
    TPM holds both the EK and the AK without sending the secret, and binds everything the agent
    sent (agent id, AK, API address, TLS certificate, location key, and fields a registrar of
    another version ignores): whoever alters the request on its way cannot produce the proof
    for the altered one, so it is never activated.
    """
    return hmac.new(secret, ACTIVATION_PROOF_PREFIX + request_digest, hashlib.sha256).digest()


def location_key_qualifying_data(
    agent_id: str, ak_name: bytes, nonce: bytes | None = None
) -> bytes:
    """The extraData of the location key's TPM2_Certify, derived alike by agent and registrar.

    At enrolment: ``SHA-256("geoattest-location-key-v1" ‖ 0x00 ‖ agent id ‖ 0x00 ‖ AK name)``;
    a certification made for one agent id or one AK cannot be presented for another. Answering
    a registrar challenge ``nonce``: ``SHA-256("geoattest-location-key-v2" ‖ 0x00 ‖ agent id ‖
    0x00 ‖ AK name ‖ 0x00 ‖ nonce)``, which the registrar accepts once, while the nonce is fresh.
    """
    bound = agent_id.encode("ascii") + b"\x00" + ak_name
    if nonce is None:
        return hashlib.sha256(b"geoattest-location-key-v1\x00" + bound).digest()
    return hashlib.sha256(b"geoattest-location-key-v2\x00" + bound + b"\x00" + nonce).digest()
