"""The registrar's tables: proven agent identities, and enrolments waiting for their proof."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from geoattest.db import Base


class AgentRecord(Base):
    """One agent identity: an EK (fixed for the agent's life) and the AK proven to sit beside it.

    Written only by a successful activation (``state`` is always ``active``; the column stays for
    the rows' history and the API's shape): an enrolment nobody proved never changes it.

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
    # The registrar challenge the certification answered (None: certified at enrolment).
    location_key_nonce: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The GNSS receiver enrolled with the AK (``wire.receiver_canonical``; None: not reported).
    gnss_receiver: Mapped[bytes | None] = mapped_column(LargeBinary)


class PendingEnrolment(Base):
    """One enrolment request whose AK is not proven yet: what activation would make the record.

    Pending enrolments are not identities: they never conflict with each other, several may be
    open for one agent id or one EK (an attacker's beside the genuine node's), and only a
    successful activation turns one into the ``AgentRecord``. No secret is kept: ``proof_check``
    is a keyed hash of the expected proof (``registrar.proof_check``) from which the proof
    cannot be computed.
    """

    __tablename__ = "registrar_enrolments"

    enrolment_id: Mapped[str] = mapped_column(String(32), primary_key=True)  # random, hex
    agent_id: Mapped[str] = mapped_column(String(64), index=True)
    ek_fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    request_digest: Mapped[bytes] = mapped_column(LargeBinary)  # ``wire.enrolment_digest``
    proof_check: Mapped[bytes] = mapped_column(LargeBinary)
    ek_certificate: Mapped[bytes] = mapped_column(LargeBinary)  # the bytes as the agent sent them
    ek_public: Mapped[bytes] = mapped_column(LargeBinary)
    ek_anchor_subject: Mapped[str] = mapped_column(String())
    ek_anchor_fingerprint: Mapped[str] = mapped_column(String(64))
    tpm_manufacturer: Mapped[str | None] = mapped_column(String())
    tpm_model: Mapped[str | None] = mapped_column(String())
    purchase_order: Mapped[str | None] = mapped_column(String())
    asset_tag: Mapped[str | None] = mapped_column(String())
    ak_public: Mapped[bytes] = mapped_column(LargeBinary)
    ak_name: Mapped[bytes] = mapped_column(LargeBinary)
    agent_url: Mapped[str | None] = mapped_column(String(512))
    tls_certificate: Mapped[bytes | None] = mapped_column(LargeBinary)
    location_key_public: Mapped[bytes | None] = mapped_column(LargeBinary)
    location_key_certify_attest: Mapped[bytes | None] = mapped_column(LargeBinary)
    location_key_certify_signature: Mapped[bytes | None] = mapped_column(LargeBinary)
    gnss_receiver: Mapped[bytes | None] = mapped_column(LargeBinary)


class LocationKeyChallenge(Base):
    """A nonce issued for one agent's next location-key certification: used once, then gone.

    Not a secret (the AK's signature over it is what counts), so stored as it is."""

    __tablename__ = "registrar_location_challenges"

    nonce: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
