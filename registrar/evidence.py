"""What an enrolling agent presents, and the checks it must pass before a challenge is issued.

Every check here looks only at the request and the registrar's trust policy, not at the
database: the EK certificate must chain to an allowlisted manufacturer CA (and match a
purchase-order pin when pins are configured); the EK public area must be the certificate's key
with EK attributes; the AK must be a restricted, fixedTPM signing key; a location key must be
unable to leave the TPM and be certified by that AK for this agent id.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import tpm
from allowlists import EkTrustStore, PinSet, check_ek, load_certificate
from geoattest.errors import (
    AkInvalid,
    CertifyInvalid,
    EkMismatch,
    EkUntrusted,
    LocationKeyInvalid,
    MalformedRequest,
    TpmFormatError,
)
from geoattest.wire import location_key_qualifying_data

__all__ = [
    "CheckedEnrolment",
    "EnrolmentEvidence",
    "LocationKey",
    "TrustPolicy",
    "check_enrolment",
    "check_location_key",
    "ek_key_fingerprint",
    "parse_public",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class TrustPolicy:
    """What the registrar trusts: manufacturer CAs, optional purchase-order pins, challenge
    lifetime."""

    store: EkTrustStore
    pins: PinSet | None
    challenge_ttl: timedelta


@dataclass(frozen=True, slots=True, kw_only=True)
class LocationKey:
    """A location key's TPM2B_PUBLIC and its TPM2_Certify by the AK (TPMS_ATTEST and
    TPMT_SIGNATURE)."""

    public: bytes
    certify_attest: bytes
    certify_signature: bytes
    nonce: bytes | None = None  # the registrar challenge the certification answers (rotation)


@dataclass(frozen=True, slots=True, kw_only=True)
class EnrolmentEvidence:
    """One enrolment request as received; ``request_digest`` is ``wire.enrolment_digest`` of the
    JSON object as it arrived, which the activation proof must bind."""

    agent_id: str
    ek_certificate: bytes
    ek_public: bytes
    ak_public: bytes
    agent_url: str | None = None
    tls_certificate: bytes | None = None
    location_key: LocationKey | None = None
    gnss_receiver: bytes | None = None  # canonical JSON (``wire.receiver_canonical``)
    request_digest: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckedEnrolment:
    """An enrolment that passed every check: the parsed keys and what the EK check found."""

    evidence: EnrolmentEvidence
    ek_public: tpm.TpmPublic
    ak_public: tpm.TpmPublic
    ek_fingerprint: str  # ``ek_key_fingerprint``: the EK's identity, whatever the cert encoding
    ek_anchor_subject: str
    ek_anchor_fingerprint: str
    tpm_manufacturer: str | None
    tpm_model: str | None
    purchase_order: str | None
    asset_tag: str | None


def check_enrolment(
    evidence: EnrolmentEvidence, trust: TrustPolicy, *, now: datetime
) -> CheckedEnrolment:
    """Check EK certificate, EK public area, AK and location key, in that order.

    Raises ``MalformedRequest`` (not a certificate), ``EkUntrusted``/``EkNotPinned`` (chain or
    pin), ``EkMismatch`` (EK public area), ``AkInvalid`` (AK), ``LocationKeyInvalid`` (see
    ``check_location_key``).
    """
    try:
        certificate = load_certificate(evidence.ek_certificate)
    except EkUntrusted as e:
        raise MalformedRequest(f"ek_certificate is not an X.509 certificate: {e}") from e
    verdict = check_ek(certificate, store=trust.store, pins=trust.pins, now=now)
    ek_public = parse_public(evidence.ek_public, EkMismatch, "EK public area")
    tpm.check_ek_attributes(ek_public)
    if not tpm.public_key_matches(ek_public, verdict.certificate.public_key):
        raise EkMismatch("EK public area does not hold the key of the EK certificate")
    ak_public = parse_public(evidence.ak_public, AkInvalid, "AK public area")
    tpm.check_ak_attributes(ak_public)
    if evidence.location_key is not None:
        check_location_key(evidence.location_key, ak=ak_public, agent_id=evidence.agent_id)
    return CheckedEnrolment(
        evidence=evidence,
        ek_public=ek_public,
        ak_public=ak_public,
        # An EK is identified by its public key: certificate bytes can be re-encoded (PEM,
        # non-minimal DER, ECDSA s -> n-s) and still validate, but the key cannot change.
        ek_fingerprint=ek_key_fingerprint(verdict.certificate.public_key),
        ek_anchor_subject=verdict.chain.anchor.subject,
        ek_anchor_fingerprint=verdict.chain.anchor.fingerprint.hex(),
        tpm_manufacturer=verdict.certificate.tpm_manufacturer,
        tpm_model=verdict.certificate.tpm_model,
        purchase_order=verdict.pin.purchase_order if verdict.pin else None,
        asset_tag=verdict.pin.asset_tag if verdict.pin else None,
    )


def check_location_key(
    key: LocationKey, *, ak: tpm.TpmPublic, agent_id: str, nonce: bytes | None = None
) -> tpm.TpmPublic:
    """Check a location key and its certification; returns its parsed public area.

    The public area must parse and show a key that cannot leave the TPM (fixedTPM, fixedParent,
    sensitiveDataOrigin; unrestricted ECC P-256 ECDSA-SHA256 signing key, see
    ``tpm.check_location_key_attributes``), and the TPM2_Certify must verify with ``ak``, name
    exactly this public area and carry ``location_key_qualifying_data(agent_id, ak.name, nonce)``
    (``nonce``: the registrar challenge a rotation answers, checked fresh by the caller): only
    then was the key created inside the TPM that holds the AK. Raises ``LocationKeyInvalid``.
    """
    try:
        public = tpm.parse_tpm2b_public(key.public)
    except TpmFormatError as e:
        raise LocationKeyInvalid(f"location key is not a TPM2B_PUBLIC: {e.message}") from e
    tpm.check_location_key_attributes(public)
    try:
        tpm.verify_certify(
            signer=ak,
            attest=key.certify_attest,
            signature=key.certify_signature,
            certified=public,
            qualifying_data=location_key_qualifying_data(agent_id, ak.name, nonce),
        )
    except CertifyInvalid as e:
        raise LocationKeyInvalid(
            f"location key is not certified by the agent's AK: {e.message}"
        ) from e
    return public


def ek_key_fingerprint(key: CertificatePublicKeyTypes) -> str:
    """SHA-256 (hex) of the EK's SubjectPublicKeyInfo: the agent's stable EK identity."""
    spki = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def parse_public(
    data: bytes, error: type[EkMismatch] | type[AkInvalid], what: str
) -> tpm.TpmPublic:
    """``data`` as a TPM2B_PUBLIC; raises ``error`` naming ``what`` when it does not parse."""
    try:
        return tpm.parse_tpm2b_public(data)
    except TpmFormatError as e:
        raise error(f"{what} is not a TPM2B_PUBLIC: {e.message}") from e
