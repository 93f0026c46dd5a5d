"""Single-use registrar nonces for location-key (re-)certification.

A location key registered after enrolment (``PUT /v1/agents/<id>/location-key``, open to anyone:
the AK's signature authorises it) must be certified over a nonce the registrar issued for that
agent moments before. Without it, anyone holding an old certification (they are shown by the
registrar and travel in enrolment requests) could register it again and roll the agent back to a
key it no longer signs with, making its genuine evidence fail. A nonce is issued only for an
active agent, lives ``CHALLENGE_TTL``, and is consumed by the registration it answers (in the
same transaction), so each certification registers at most once. At most
``MAX_OPEN_PER_AGENT`` are open per agent (older ones are dropped), so asking for many costs the
registrar nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from geoattest.db import as_utc
from geoattest.wire import LOCATION_KEY_NONCE_BYTES
from registrar.models import LocationKeyChallenge

__all__ = ["CHALLENGE_TTL", "MAX_OPEN_PER_AGENT", "issue", "take"]

CHALLENGE_TTL = timedelta(minutes=5)
MAX_OPEN_PER_AGENT = 4


def issue(
    session: Session, agent_id: str, now: datetime, random_bytes: Callable[[int], bytes]
) -> tuple[bytes, datetime]:
    """A fresh nonce for ``agent_id`` and when it expires; expired and surplus ones are dropped."""
    session.execute(delete(LocationKeyChallenge).where(LocationKeyChallenge.expires_at <= now))
    open_ones = session.scalars(
        select(LocationKeyChallenge)
        .where(LocationKeyChallenge.agent_id == agent_id)
        .order_by(LocationKeyChallenge.created_at.desc())
    ).all()
    for stale in open_ones[MAX_OPEN_PER_AGENT - 1 :]:
        session.delete(stale)
    nonce = random_bytes(LOCATION_KEY_NONCE_BYTES)
    expires_at = now + CHALLENGE_TTL
    session.add(
        LocationKeyChallenge(nonce=nonce, agent_id=agent_id, created_at=now, expires_at=expires_at)
    )
    return nonce, expires_at


def take(session: Session, agent_id: str, nonce: bytes, now: datetime) -> str | None:
    """Consume ``nonce`` for ``agent_id``; ``None`` when it was open, else why it is refused."""
    found = session.get(LocationKeyChallenge, nonce)
    if found is None or found.agent_id != agent_id:
        return "the nonce was not issued for this agent, or was already used"
    session.delete(found)
    if as_utc(found.expires_at) <= now:
        return "the nonce has expired: ask for a new challenge"
    return None
