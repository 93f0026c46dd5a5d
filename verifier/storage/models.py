"""The verifier's durable tables: policies, agents under verification, state events, deliveries."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from geoattest.db import Base


class PolicyRecord(Base):
    __tablename__ = "verifier_policies"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[str] = mapped_column(Text)  # the PolicyDocument as JSON
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
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str | None] = mapped_column(Text)
    state_since: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


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
