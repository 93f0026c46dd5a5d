"""The verifier's durable tables: policies, agents under verification, evidence records, state
events, webhook deliveries, issued tokens, and the transparency log (entries, tree nodes,
checkpoints)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from geoattest.db import Base


class PolicyRecord(Base):
    __tablename__ = "verifier_policies"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[str] = mapped_column(Text)  # RFC 8785 canonical JSON of the PolicyDocument
    sha256: Mapped[bytes | None] = mapped_column(LargeBinary)  # of ``document``'s UTF-8 bytes
    max_age_seconds: Mapped[float | None] = mapped_column(Float)  # the lease, for fast readers
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class VerifiedAgent(Base):
    """An agent under continuous attestation, with what was fetched from the registrar."""

    __tablename__ = "verifier_agents"

    agent_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    policy_name: Mapped[str] = mapped_column(ForeignKey("verifier_policies.name"))
    ak_public: Mapped[bytes] = mapped_column(LargeBinary)
    agent_url: Mapped[str] = mapped_column(String(512))
    tls_certificate: Mapped[bytes] = mapped_column(LargeBinary)
    location_key_public: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The GNSS receiver enrolled at the registrar (``wire.receiver_canonical``; None: none).
    gnss_receiver: Mapped[bytes | None] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str | None] = mapped_column(Text)
    details: Mapped[str | None] = mapped_column(Text)  # JSON object of the last transition
    state_since: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The lease and the chain, written by every verdict under the writer's fencing token: a
    # writer whose ``fence`` is not above the stored one took the lock earlier and changes nothing.
    fence: Mapped[int] = mapped_column(Integer, default=0)
    chain_seq: Mapped[int] = mapped_column(Integer, default=0)  # seq of the newest record
    chain_head: Mapped[bytes | None] = mapped_column(LargeBinary)  # its digest
    last_round_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_passed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_sample_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ima_entries_verified: Mapped[int | None] = mapped_column(Integer)
    # SHA-256 of the EK certificate as the registrar holds it (tokens name it); None for agents
    # added before it was recorded, until their next ``refresh``.
    ek_certificate_sha256: Mapped[bytes | None] = mapped_column(LargeBinary)
    # ``pull``: the scheduler fetches its evidence; ``push``: it posts evidence (ADR 19).
    mode: Mapped[str] = mapped_column(String(8), default="pull", server_default="pull")


class RecordRow(Base):
    """One evidence record (``verifier.core.record``): its canonical bytes, zlib-compressed."""

    __tablename__ = "verifier_records"
    __table_args__ = (
        UniqueConstraint("agent_id", "seq", name="uq_verifier_records_agent_seq"),
        Index("ix_verifier_records_agent_ended", "agent_id", "ended_at"),
        Index("ix_verifier_records_fold", "kept", "ended_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agent_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    round_id: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str | None] = mapped_column(String(24))
    reason: Mapped[str | None] = mapped_column(String(64))
    # Kept in full for good (failure, transition, reboot, sample); others fold after the hot window.
    kept: Mapped[bool] = mapped_column(Boolean)
    digest: Mapped[bytes] = mapped_column(LargeBinary)
    prev: Mapped[bytes] = mapped_column(LargeBinary)
    body: Mapped[bytes] = mapped_column(LargeBinary)  # canonical bytes; zlib'd when kept
    size: Mapped[int] = mapped_column(Integer)  # bytes of the canonical record


class RecordFold(Base):
    """A run of consecutive records past the hot window, kept as their chain's two ends.

    ``prev`` is the digest before the run's first record and ``head`` the digest of its last, so
    the chain still links the kept records on both sides; ``outcomes`` counts the run's outcomes.
    """

    __tablename__ = "verifier_record_folds"
    __table_args__ = (
        UniqueConstraint("agent_id", "first_seq", name="uq_verifier_record_folds_agent_first"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agent_id: Mapped[str] = mapped_column(String(64), index=True)
    first_seq: Mapped[int] = mapped_column(Integer)
    last_seq: Mapped[int] = mapped_column(Integer)
    count: Mapped[int] = mapped_column(Integer)
    first_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    prev: Mapped[bytes] = mapped_column(LargeBinary)
    head: Mapped[bytes] = mapped_column(LargeBinary)
    outcomes: Mapped[str] = mapped_column(Text)  # JSON object: outcome -> count


class EventRecord(Base):
    """Every state transition, with the reason code that caused it."""

    __tablename__ = "verifier_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agent_id: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str | None] = mapped_column(Text)
    details: Mapped[str | None] = mapped_column(Text)  # JSON object: offending path, digest…
    round_id: Mapped[str | None] = mapped_column(String(32))
    record_seq: Mapped[int | None] = mapped_column(Integer)  # the evidence record behind it


class WebhookDelivery(Base):
    """One attempt history of notifying one webhook about one integrity failure."""

    __tablename__ = "verifier_webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("verifier_events.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(16))  # pending / delivered / gave_up
    attempts: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TokenRow(Base):
    """One PoR/PoG token as issued: what it claims, the record it was built from, the compact JWS
    itself, and when the verifier revoked it (the status document lists the unexpired ones)."""

    __tablename__ = "verifier_tokens"
    __table_args__ = (
        Index("ix_verifier_tokens_agent_issued", "agent_id", "issued_at"),
        Index("ix_verifier_tokens_agent_expires", "agent_id", "expires_at"),
        Index("ix_verifier_tokens_revoked", "revoked_at", "expires_at"),
    )

    jti: Mapped[str] = mapped_column(String(32), primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(8))  # por | pog
    audience: Mapped[str] = mapped_column(String(256))
    workload_sha256: Mapped[bytes] = mapped_column(LargeBinary)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    record_seq: Mapped[int] = mapped_column(Integer)  # the evidence record every claim traces to
    token: Mapped[str] = mapped_column(Text)  # the compact JWS
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LogEntryRow(Base):
    """One entry of the transparency log (``verifier.core.log_entry``), canonical bytes.

    Entries are queued (``idx`` None) by the transaction that makes what they describe, and
    sequenced into the tree (``idx`` = the leaf index) by the checkpoint task, in queue order.
    """

    __tablename__ = "verifier_log_entries"
    __table_args__ = (
        UniqueConstraint("idx", name="uq_verifier_log_entries_idx"),
        Index("ix_verifier_log_entries_agent", "agent_id", "kind", "ref_seq"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    idx: Mapped[int | None] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    agent_id: Mapped[str | None] = mapped_column(String(64))
    ref_seq: Mapped[int | None] = mapped_column(Integer)  # a record's seq, a fold's first seq
    entry: Mapped[bytes] = mapped_column(LargeBinary)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary)
    queued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LogNode(Base):
    """A perfect subtree of the log's Merkle tree above the leaves (level >= 1)."""

    __tablename__ = "verifier_log_nodes"

    level: Mapped[int] = mapped_column(Integer, primary_key=True)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hash: Mapped[bytes] = mapped_column(LargeBinary)


class LogState(Base):
    """The log's one row: its origin (its name in checkpoints), size and root."""

    __tablename__ = "verifier_log_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    origin: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(BigInteger)
    root: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CheckpointRow(Base):
    """A signed checkpoint (the JWS as issued); kept for good."""

    __tablename__ = "verifier_log_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    size: Mapped[int] = mapped_column(BigInteger, index=True)
    root: Mapped[bytes] = mapped_column(LargeBinary)
    signed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    kid: Mapped[str] = mapped_column(String(64))
    jws: Mapped[str] = mapped_column(Text)


class DocumentRow(Base):
    """What records name by digest, kept content-addressed so an export years later still has
    it: policy documents (every version), zones files, TPM public areas (AKs, location keys)."""

    __tablename__ = "verifier_documents"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)  # hex, of ``body``
    kind: Mapped[str] = mapped_column(String(16))  # policy | zones | tpm_public
    name: Mapped[str | None] = mapped_column(String(200), index=True)  # policy name, TPM name
    body: Mapped[bytes] = mapped_column(LargeBinary)
    stored_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
