"""Attestation policies as stored: each a canonical document (RFC 8785 bytes), its digest and a
version that grows with every write. A policy used by an agent cannot be deleted."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, LargeBinary, cast, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from geoattest.db import as_utc, transaction
from geoattest.errors import NotFound, PolicyInUse
from geoattest.wire import PolicyDocument
from verifier.core.log_entry import AuditAction
from verifier.storage.config_changes import Audit, log_change
from verifier.storage.documents import DocumentKind, remember
from verifier.storage.models import PolicyRecord, VerifiedAgent


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredPolicy:
    name: str
    version: int
    updated_at: datetime
    document: PolicyDocument
    canonical: bytes  # the stored RFC 8785 bytes the digest covers
    digest: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyHead:
    """What identifies a stored policy's document without reading it."""

    version: int
    digest: bytes | None  # None on rows from before digests were kept
    size_bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicySummary:
    """A stored policy without its document."""

    name: str
    version: int
    updated_at: datetime
    digest: bytes
    size_bytes: int  # of the canonical document


class PolicyTables:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def put_policy(
        self,
        name: str,
        canonical: bytes,
        digest: bytes,
        now: datetime,
        *,
        max_age_seconds: float | None = None,
        audit: Audit | None = None,
    ) -> PolicySummary:
        """Store a validated policy as its canonical bytes (``canonical_document``)."""
        with transaction(self._sessions) as session:
            record = session.get(PolicyRecord, name)
            if record is None:
                record = PolicyRecord(name=name, version=0)
                session.add(record)
            record.version += 1
            record.document = canonical.decode("utf-8")
            record.sha256 = digest
            record.max_age_seconds = max_age_seconds
            record.updated_at = now
            remember(session, DocumentKind.POLICY, canonical, now, name)
            log_change(
                session,
                audit,
                AuditAction.POLICY_PUT,
                name,
                version=str(record.version),
                sha256=digest.hex(),
            )
            return PolicySummary(
                name=name,
                version=record.version,
                updated_at=as_utc(now),
                digest=digest,
                size_bytes=len(canonical),
            )

    def get_policy(self, name: str) -> StoredPolicy:
        with transaction(self._sessions) as session:
            record = session.get(PolicyRecord, name)
            if record is None:
                raise NotFound(f"no policy {name!r}")
            return _policy(record)

    def policy_max_ages(self) -> dict[str, float | None]:
        """Each policy's lease setting (seconds; None: the verifier's default), without loading
        the documents (a whole-system runtime policy is tens of MB)."""
        with transaction(self._sessions) as session:
            rows = session.execute(select(PolicyRecord.name, PolicyRecord.max_age_seconds))
            return {name: max_age for name, max_age in rows}

    def policy_summaries(self) -> list[PolicySummary]:
        """Every policy by name, without parsing (or, on PostgreSQL, fetching) the documents."""
        with transaction(self._sessions) as session:
            size = _utf8_length(session, PolicyRecord.document)
            rows = session.execute(
                select(
                    PolicyRecord.name,
                    PolicyRecord.version,
                    PolicyRecord.updated_at,
                    PolicyRecord.sha256,
                    size,
                ).order_by(PolicyRecord.name)
            )
            return [
                PolicySummary(
                    name=name,
                    version=version,
                    updated_at=as_utc(updated_at),
                    digest=digest or b"",
                    size_bytes=int(length or 0),
                )
                for name, version, updated_at, digest, length in rows
            ]

    def policy_heads(self) -> dict[str, PolicyHead]:
        """Each policy's version, digest and size, without the documents: what a worker
        compares to decide which policies to parse again."""
        with transaction(self._sessions) as session:
            size = _utf8_length(session, PolicyRecord.document)
            rows = session.execute(
                select(PolicyRecord.name, PolicyRecord.version, PolicyRecord.sha256, size)
            )
            return {
                name: PolicyHead(version=version, digest=digest, size_bytes=size_bytes)
                for name, version, digest, size_bytes in rows
            }

    def list_policies(self) -> list[StoredPolicy]:
        with transaction(self._sessions) as session:
            records = session.scalars(select(PolicyRecord).order_by(PolicyRecord.name))
            return [_policy(record) for record in records]

    def delete_policy(self, name: str, *, audit: Audit | None = None) -> None:
        with transaction(self._sessions) as session:
            record = session.get(PolicyRecord, name)
            if record is None:
                raise NotFound(f"no policy {name!r}")
            users = session.scalar(select(func.count()).where(VerifiedAgent.policy_name == name))
            if users:
                raise PolicyInUse(f"policy {name!r} is used by {users} agent(s)")
            session.delete(record)
            log_change(
                session, audit, AuditAction.POLICY_DELETED, name, version=str(record.version)
            )


def _utf8_length(session: Session, column: InstrumentedAttribute[str]) -> ColumnElement[int]:
    """The length in bytes of a text column's UTF-8 (``length`` counts characters)."""
    if session.get_bind().dialect.name == "postgresql":
        return func.octet_length(column)
    return func.length(cast(column, LargeBinary))  # SQLite: a BLOB's length is in bytes


def _policy(record: PolicyRecord) -> StoredPolicy:
    canonical = record.document.encode("utf-8")
    return StoredPolicy(
        name=record.name,
        version=record.version,
        updated_at=as_utc(record.updated_at),
        document=PolicyDocument.model_validate_json(canonical),
        canonical=canonical,
        digest=record.sha256 or hashlib.sha256(canonical).digest(),
    )
