"""The registrar's tables: enrolled agent identities and their pending credential challenges."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from geoattest.db import Base


class AgentRecord(Base):
    """One agent identity: an EK (fixed for the agent's life) and the AK proven to sit beside it.

    Text the registrar does not choose (the trust anchor's subject, the TPM's manufacturer and
    model from the EK certificate, the pins file's purchase order and asset tag) is unbounded
    ``VARCHAR``: a length cap would refuse a genuine TPM on PostgreSQL only.
    """

    __tablename__ = "registrar_agents"

    agent_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    ek_certificate: Mapped[bytes] = mapped_column(LargeBinary)
    ek_fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    ek_public: Mapped[bytes] = mapped_column(LargeBinary)
    ak_public: Mapped[bytes | None] = mapped_column(LargeBinary)
    ak_name: Mapped[bytes | None] = mapped_column(LargeBinary)
    ek_anchor_subject: Mapped[str] = mapped_column(String())
    ek_anchor_fingerprint: Mapped[str] = mapped_column(String(64))
    tpm_manufacturer: Mapped[str | None] = mapped_column(String())
    tpm_model: Mapped[str | None] = mapped_column(String())
    purchase_order: Mapped[str | None] = mapped_column(String())
    asset_tag: Mapped[str | None] = mapped_column(String())
    enrolled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    agent_url: Mapped[str | None] = mapped_column(String(512))
    tls_certificate: Mapped[bytes | None] = mapped_column(LargeBinary)
    location_key_public: Mapped[bytes | None] = mapped_column(LargeBinary)
    location_key_certify_attest: Mapped[bytes | None] = mapped_column(LargeBinary)
    location_key_certify_signature: Mapped[bytes | None] = mapped_column(LargeBinary)


class PendingChallenge(Base):
    """An agent's open MakeCredential challenge: the candidate AK and the secret to recover.

    The agent's current AK (if any) stays in force until this challenge is answered, so a
    re-enrolment that never completes cannot take an active agent's identity away.
    """

    __tablename__ = "registrar_challenges"

    agent_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("registrar_agents.agent_id", ondelete="CASCADE"), primary_key=True
    )
    ak_public: Mapped[bytes] = mapped_column(LargeBinary)
    ak_name: Mapped[bytes] = mapped_column(LargeBinary)
    secret: Mapped[bytes] = mapped_column(LargeBinary)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    request_digest: Mapped[bytes | None] = mapped_column(LargeBinary)
    agent_url: Mapped[str | None] = mapped_column(String(512))
    tls_certificate: Mapped[bytes | None] = mapped_column(LargeBinary)
    location_key_public: Mapped[bytes | None] = mapped_column(LargeBinary)
    location_key_certify_attest: Mapped[bytes | None] = mapped_column(LargeBinary)
    location_key_certify_signature: Mapped[bytes | None] = mapped_column(LargeBinary)
