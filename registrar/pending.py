"""Pending enrolments: kept apart from identities until one of them is proven.

Anyone who knows an agent's public EK certificate can post an enrolment for it, so a pending
enrolment claims nothing: it is never a conflict for another enrolment, several coexist for
one agent id or EK, a new one never replaces an older one, and a wrong proof withdraws none
(a 256-bit proof cannot be guessed, and withdrawing would let anyone cancel the genuine node's
challenge). They expire after the challenge lifetime and are purged as the registrar works.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from geoattest.db import as_utc
from registrar.evidence import CheckedEnrolment
from registrar.models import PendingEnrolment
from registrar.proof_check import ProofChecker

__all__ = ["ProofMatch", "add", "count", "has_open", "match_proof", "purge_expired", "withdraw"]


def add(
    session: Session,
    checked: CheckedEnrolment,
    *,
    enrolment_id: str,
    proof_check: bytes,
    now: datetime,
    expires_at: datetime,
) -> None:
    """Store one checked enrolment with the sealed proof that will activate it."""
    evidence = checked.evidence
    location_key = evidence.location_key
    session.add(
        PendingEnrolment(
            enrolment_id=enrolment_id,
            agent_id=evidence.agent_id,
            ek_fingerprint=checked.ek_fingerprint,
            created_at=now,
            expires_at=expires_at,
            request_digest=evidence.request_digest,
            proof_check=proof_check,
            ek_certificate=evidence.ek_certificate,
            ek_public=evidence.ek_public,
            ek_anchor_subject=checked.ek_anchor_subject,
            ek_anchor_fingerprint=checked.ek_anchor_fingerprint,
            tpm_manufacturer=checked.tpm_manufacturer,
            tpm_model=checked.tpm_model,
            purchase_order=checked.purchase_order,
            asset_tag=checked.asset_tag,
            ak_public=evidence.ak_public,
            ak_name=checked.ak_public.name,
            agent_url=evidence.agent_url,
            tls_certificate=evidence.tls_certificate,
            location_key_public=location_key.public if location_key else None,
            location_key_certify_attest=location_key.certify_attest if location_key else None,
            location_key_certify_signature=(
                location_key.certify_signature if location_key else None
            ),
            gnss_receiver=evidence.gnss_receiver,
        )
    )


@dataclass(frozen=True, slots=True)
class ProofMatch:
    """The enrolment a proof answers, or why none: ``refusal`` says it for the agent."""

    enrolment: PendingEnrolment | None
    refusal: str | None


def match_proof(
    session: Session, checker: ProofChecker, *, agent_id: str, proof: bytes, now: datetime
) -> ProofMatch:
    """Find the open enrolment of ``agent_id`` that ``proof`` answers (checked against each)."""
    rows: Sequence[PendingEnrolment] = session.scalars(
        select(PendingEnrolment).where(PendingEnrolment.agent_id == agent_id)
    ).all()
    if not rows:
        return ProofMatch(None, f"agent {agent_id!r} has no open enrolment: enrol first")
    answered = [
        row
        for row in rows
        if checker.matches(
            row.proof_check,
            enrolment_id=row.enrolment_id,
            agent_id=row.agent_id,
            request_digest=row.request_digest,
            proof=proof,
        )
    ]
    live = [row for row in answered if as_utc(row.expires_at) > now]
    if live:
        return ProofMatch(live[0], None)
    if answered:
        return ProofMatch(None, f"the enrolment of agent {agent_id!r} expired: enrol again")
    return ProofMatch(
        None, f"activation proof for agent {agent_id!r} does not match any open enrolment"
    )


def has_open(session: Session, agent_id: str, now: datetime) -> bool:
    """Whether ``agent_id`` has an enrolment that has not expired."""
    query = select(PendingEnrolment.enrolment_id).where(
        PendingEnrolment.agent_id == agent_id, PendingEnrolment.expires_at > now
    )
    return session.scalars(query.limit(1)).first() is not None


def count(session: Session) -> int:
    """How many enrolments are stored (expired ones not yet purged included)."""
    return session.scalar(select(func.count()).select_from(PendingEnrolment)) or 0


def purge_expired(session: Session, now: datetime) -> None:
    """Remove every enrolment whose challenge lifetime is over."""
    session.execute(delete(PendingEnrolment).where(PendingEnrolment.expires_at <= now))


def withdraw(session: Session, *, agent_id: str, ek_fingerprint: str | None) -> None:
    """Remove the enrolments of ``agent_id``, and of the EK when one is named (an activation or
    a delete made them moot)."""
    same_agent = PendingEnrolment.agent_id == agent_id
    if ek_fingerprint is None:
        session.execute(delete(PendingEnrolment).where(same_agent))
        return
    same_ek = PendingEnrolment.ek_fingerprint == ek_fingerprint
    session.execute(delete(PendingEnrolment).where(or_(same_agent, same_ek)))
