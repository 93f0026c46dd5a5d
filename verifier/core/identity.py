"""The registrar's answer is not taken on trust: what the verifier checks before it attests an
agent under an identity the registrar reports. Pure.

1. The answer is about the agent asked for.
2. It carries the registrar's signed identity statement (``geoattest.identity_statement``),
   verified with the registrar key the verifier pins, describing exactly these bytes and fresh
   (an old statement replayed on the wire is refused).
3. The EK certificate chains to the verifier's *own* EK trust store (and purchase-order pins),
   and the EK public area is that certificate's key with EK attributes.
4. The AK is a restricted, fixedTPM signing key, and a location key carries the AK's
   TPM2_Certify for this agent id.
5. The GNSS receiver recorded at enrolment (if any) is the one the statement names; it is
   returned as a ``geofence.GnssReceiver`` for the per-round comparison.

The EK/AK binding was proven by credential activation at the registrar, interactively; it cannot
be re-run here, so (2) is what stands for it: the pinned registrar signed that it happened.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

import tpm
from allowlists import EkTrustStore, PinSet, check_ek
from geoattest.errors import (
    AkInvalid,
    CertifyInvalid,
    EkMismatch,
    LocationKeyInvalid,
    RegistrarAnswerInvalid,
    TpmFormatError,
)
from geoattest.identity_statement import IdentityFacts, StatementInvalid, verify_statement
from geoattest.wire import (
    AgentView,
    GnssReceiverWire,
    location_key_qualifying_data,
    receiver_canonical,
)
from geofence import GnssReceiver, SourceKind

STATEMENT_MAX_AGE = dt.timedelta(minutes=5)


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentityTrust:
    """What the verifier trusts about identities, configured on its own side."""

    ek_store: EkTrustStore
    ek_pins: PinSet | None
    registrar_key: ec.EllipticCurvePublicKey


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckedIdentity:
    """What the verifier takes from a registrar record that passed every check."""

    ak_public: bytes
    agent_url: str | None
    tls_certificate: bytes | None
    location_key_public: bytes | None
    ek_certificate_sha256: bytes  # what tokens name the host by
    gnss_receiver: bytes | None = None  # canonical JSON of the enrolled receiver (signed)


def facts_of(view: AgentView) -> IdentityFacts:
    """What the registrar's statement must describe about ``view``."""
    return IdentityFacts(
        agent_id=view.agent_id,
        state=view.state,
        activated_at=view.activated_at,
        ek_certificate=view.ek_certificate,
        ek_public=view.ek_public,
        ak_public=view.ak_public,
        agent_url=view.agent_url,
        tls_certificate=view.tls_certificate,
        location_key_public=view.location_key_public,
        location_key_certify_attest=view.location_key_certify_attest,
        location_key_certify_signature=view.location_key_certify_signature,
        gnss_receiver=receiver_canonical(view.gnss_receiver) if view.gnss_receiver else None,
    )


def check_identity(
    view: AgentView, trust: IdentityTrust, *, asked_for: str, now: dt.datetime
) -> CheckedIdentity:
    """Check a registrar record (see the module docstring). Raises ``RegistrarAnswerInvalid``
    (another agent, unsigned, badly signed, stale, facts that differ), ``EkUntrusted`` /
    ``EkNotPinned`` / ``EkMismatch`` (the EK), ``AkInvalid``, ``LocationKeyInvalid``."""
    if view.agent_id != asked_for:
        raise RegistrarAnswerInvalid(
            f"registrar answered for agent {view.agent_id!r} when asked for {asked_for!r}"
        )
    facts = facts_of(view)
    try:
        issued = verify_statement(
            facts, view.identity_statement, view.identity_signature, trust.registrar_key
        )
    except StatementInvalid as e:
        raise RegistrarAnswerInvalid(f"registrar record of {asked_for!r}: {e}") from e
    if abs(now - issued) > STATEMENT_MAX_AGE:
        raise RegistrarAnswerInvalid(
            f"registrar record of {asked_for!r} was signed at {issued.isoformat()}: not fresh "
            "(a replayed answer?)"
        )
    verdict = check_ek(view.ek_certificate, store=trust.ek_store, pins=trust.ek_pins, now=now)
    try:
        ek = tpm.parse_tpm2b_public(view.ek_public)
    except TpmFormatError as e:
        raise EkMismatch(f"registrar record of {asked_for!r}: EK public area: {e.message}") from e
    tpm.check_ek_attributes(ek)
    if not tpm.public_key_matches(ek, verdict.certificate.public_key):
        raise EkMismatch(
            f"registrar record of {asked_for!r}: the EK public area is not the certificate's key"
        )
    if view.ak_public is None:
        raise AkInvalid(f"registrar record of {asked_for!r} has no AK")
    ak = _check_ak(asked_for, view.ak_public)
    if view.location_key_public is not None:
        _check_location_key(asked_for, ak, view)
    return CheckedIdentity(
        ak_public=view.ak_public,
        agent_url=view.agent_url,
        tls_certificate=view.tls_certificate,
        location_key_public=view.location_key_public,
        ek_certificate_sha256=hashlib.sha256(view.ek_certificate).digest(),
        gnss_receiver=facts.gnss_receiver,
    )


def enrolled_receiver(canonical: bytes) -> GnssReceiver:
    """The ``GnssReceiver`` of stored canonical bytes (``CheckedIdentity.gnss_receiver``).
    ``ValueError`` when they do not parse (a stored value no version of us wrote)."""
    wire = GnssReceiverWire.model_validate_json(canonical)
    return GnssReceiver(source=SourceKind(wire.source), texts=tuple(wire.texts), device=wire.device)


def _check_ak(agent_id: str, ak_public: bytes) -> tpm.TpmPublic:
    try:
        ak = tpm.parse_tpm2b_public(ak_public)
        tpm.check_ak_attributes(ak)
    except (TpmFormatError, AkInvalid) as e:
        raise AkInvalid(f"registrar record of {agent_id!r}: {e.message}") from e
    return ak


def _check_location_key(agent_id: str, ak: tpm.TpmPublic, view: AgentView) -> None:
    attest, signature = view.location_key_certify_attest, view.location_key_certify_signature
    try:
        if attest is None or signature is None or view.location_key_public is None:
            raise LocationKeyInvalid("the location key comes without its certification")
        key = tpm.parse_tpm2b_public(view.location_key_public)
        tpm.check_location_key_attributes(key)
        tpm.verify_certify(
            signer=ak,
            attest=attest,
            signature=signature,
            certified=key,
            qualifying_data=location_key_qualifying_data(
                agent_id,
                ak.name,
                bytes.fromhex(view.location_key_nonce) if view.location_key_nonce else None,
            ),
        )
    except (TpmFormatError, CertifyInvalid, LocationKeyInvalid) as e:
        raise LocationKeyInvalid(f"registrar record of {agent_id!r}: {e.message}") from e
