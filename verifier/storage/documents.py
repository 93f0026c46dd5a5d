"""Content-addressed documents: every policy version, zones file and TPM public area a record
may name, kept by SHA-256 so a residency export still finds them after they changed.

``remember`` stores a document once (inside the caller's transaction, in a savepoint so that a
copy stored meanwhile by another process is no error); ``DocumentStore`` reads them back.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from geoattest.db import transaction
from verifier.storage.models import DocumentRow


class DocumentKind(StrEnum):
    POLICY = "policy"  # canonical policy document; name = the policy's name
    ZONES = "zones"  # the zones file's bytes
    TPM_PUBLIC = "tpm_public"  # TPM2B_PUBLIC; name = its TPM name, hex


@dataclass(frozen=True, slots=True, kw_only=True)
class Document:
    sha256: bytes
    kind: DocumentKind
    name: str | None
    body: bytes


def tpm_name(tpm2b_public: bytes) -> str:
    """The TPM name (sha256 nameAlg) of a marshalled TPM2B_PUBLIC, hex."""
    return "000b" + hashlib.sha256(tpm2b_public[2:]).hexdigest()


def remember(
    session: Session, kind: DocumentKind, body: bytes, at: dt.datetime, name: str | None = None
) -> bytes:
    """Store ``body`` under its SHA-256 unless it is stored; returns the digest."""
    digest = hashlib.sha256(body).digest()
    if session.get(DocumentRow, digest.hex()) is None:
        try:
            with session.begin_nested():
                session.add(
                    DocumentRow(
                        sha256=digest.hex(), kind=kind.value, name=name, body=body, stored_at=at
                    )
                )
        except IntegrityError:
            pass  # stored by another process meanwhile: the same bytes
    return digest


class DocumentStore:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def remember(
        self, kind: DocumentKind, body: bytes, at: dt.datetime, name: str | None = None
    ) -> bytes:
        with transaction(self._sessions) as session:
            return remember(session, kind, body, at, name)

    def get(self, digests: Iterable[bytes]) -> dict[bytes, Document]:
        wanted = [d.hex() for d in set(digests)]
        with transaction(self._sessions) as session:
            rows = session.scalars(select(DocumentRow).where(DocumentRow.sha256.in_(wanted)))
            return {bytes.fromhex(row.sha256): _document(row) for row in rows}

    def named(self, kind: DocumentKind, names: Iterable[str]) -> dict[str, Document]:
        wanted = list(set(names))
        with transaction(self._sessions) as session:
            rows = session.scalars(
                select(DocumentRow).where(
                    DocumentRow.kind == kind.value, DocumentRow.name.in_(wanted)
                )
            )
            return {str(row.name): _document(row) for row in rows}


def _document(row: DocumentRow) -> Document:
    return Document(
        sha256=bytes.fromhex(row.sha256), kind=DocumentKind(row.kind), name=row.name, body=row.body
    )
