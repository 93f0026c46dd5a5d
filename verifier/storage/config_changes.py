"""Who changed the verifier's configuration, and when: each change is logged as an
``AuditEntry`` in the transparency log, in the change's own transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from verifier.core.log_entry import AuditAction, AuditEntry
from verifier.storage.log_queue import enqueue


@dataclass(frozen=True, slots=True, kw_only=True)
class Audit:
    """Who changes the configuration, and when: the change is logged as an ``AuditEntry``."""

    actor: str
    at: datetime


def log_change(
    session: Session,
    audit: Audit | None,
    action: AuditAction,
    subject: str,
    *,
    agent_id: str | None = None,
    **details: str,
) -> None:
    if audit is None:
        return
    entry = AuditEntry(
        action=action,
        at=audit.at,
        actor=audit.actor,
        subject=subject,
        agent_id=agent_id,
        details=details,
    )
    enqueue(session, [entry], audit.at)
