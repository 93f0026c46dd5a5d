"""API keys and the audit log at rest: create, revoke, list, authenticate, record a call."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from geoattest.access.keys import Role, generate_key, parse_key, secret_matches
from geoattest.access.models import ApiKeyRecord, AuditRecord
from geoattest.db import as_utc, transaction
from geoattest.errors import Conflict, NotFound


@dataclass(frozen=True, slots=True, kw_only=True)
class Caller:
    name: str
    role: Role


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyView:
    name: str
    role: Role
    key_id: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    at: dt.datetime
    actor: str | None
    role: str | None
    method: str
    path: str
    remote: str | None
    status: int
    request_id: str | None
    id: int = 0  # assigned when stored


class AccessStore:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def create(self, name: str, role: Role, now: dt.datetime) -> str:
        """A new key for ``name``; returns its text (shown once, never stored)."""
        key = generate_key()
        with transaction(self._sessions) as session:
            if session.scalar(select(ApiKeyRecord).where(ApiKeyRecord.name == name)) is not None:
                raise Conflict(f"an API key named {name!r} exists (revoke it first)")
            session.add(
                ApiKeyRecord(
                    key_id=key.key_id,
                    name=name,
                    role=role.value,
                    secret_sha256=key.secret_sha256,
                    created_at=now,
                )
            )
        return key.text

    def revoke(self, name: str, now: dt.datetime) -> None:
        with transaction(self._sessions) as session:
            record = session.scalar(select(ApiKeyRecord).where(ApiKeyRecord.name == name))
            if record is None:
                raise NotFound(f"no API key named {name!r}")
            # The name is freed for a new key; the revoked record keeps its id for the audit.
            record.revoked_at = now
            record.name = f"{name}~revoked~{record.key_id}"[:64]

    def all_keys(self) -> list[KeyView]:
        with transaction(self._sessions) as session:
            return [
                KeyView(
                    name=r.name,
                    role=Role(r.role),
                    key_id=r.key_id,
                    created_at=as_utc(r.created_at),
                    revoked_at=as_utc(r.revoked_at) if r.revoked_at else None,
                )
                for r in session.scalars(select(ApiKeyRecord).order_by(ApiKeyRecord.created_at))
            ]

    def authenticate(self, text: str) -> Caller | None:
        """The caller a presented key belongs to; ``None`` for anything else (unknown, revoked,
        wrong secret, not a key): the caller learns nothing about which."""
        key = parse_key(text)
        if key is None:
            return None
        with transaction(self._sessions) as session:
            record = session.get(ApiKeyRecord, key.key_id)
            if record is None or record.revoked_at is not None:
                return None
            if not secret_matches(key, record.secret_sha256):
                return None
            return Caller(name=record.name, role=Role(record.role))

    def record_call(self, entry: AuditEntry) -> None:
        with transaction(self._sessions) as session:
            session.add(
                AuditRecord(
                    at=entry.at,
                    actor=entry.actor,
                    role=entry.role,
                    method=entry.method,
                    path=entry.path[:512],
                    remote=entry.remote,
                    status=entry.status,
                    request_id=entry.request_id,
                )
            )

    def audit(self, limit: int = 100) -> list[AuditEntry]:
        with transaction(self._sessions) as session:
            rows = session.scalars(select(AuditRecord).order_by(AuditRecord.id.desc()).limit(limit))
            return [
                AuditEntry(
                    id=r.id,
                    at=as_utc(r.at),
                    actor=r.actor,
                    role=r.role,
                    method=r.method,
                    path=r.path,
                    remote=r.remote,
                    status=r.status,
                    request_id=r.request_id,
                )
                for r in rows
            ]
