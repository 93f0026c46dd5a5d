"""The typed identity record of an enrolled agent, as the rest of the registrar passes it around."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from registrar.models import AgentRecord


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentIdentity:
    agent_id: str
    state: str
    ek_fingerprint: str
    ek_certificate: bytes
    ek_public: bytes
    ak_public: bytes | None
    ak_name: bytes | None
    ek_anchor_subject: str
    ek_anchor_fingerprint: str
    tpm_manufacturer: str | None
    tpm_model: str | None
    purchase_order: str | None
    asset_tag: str | None
    enrolled_at: datetime
    activated_at: datetime | None
    agent_url: str | None
    tls_certificate: bytes | None

    @classmethod
    def from_record(cls, record: AgentRecord) -> AgentIdentity:
        return cls(
            agent_id=record.agent_id,
            state=record.state,
            ek_fingerprint=record.ek_fingerprint,
            ek_certificate=record.ek_certificate,
            ek_public=record.ek_public,
            ak_public=record.ak_public,
            ak_name=record.ak_name,
            ek_anchor_subject=record.ek_anchor_subject,
            ek_anchor_fingerprint=record.ek_anchor_fingerprint,
            tpm_manufacturer=record.tpm_manufacturer,
            tpm_model=record.tpm_model,
            purchase_order=record.purchase_order,
            asset_tag=record.asset_tag,
            enrolled_at=as_utc(record.enrolled_at),
            activated_at=as_utc(record.activated_at) if record.activated_at else None,
            agent_url=record.agent_url,
            tls_certificate=record.tls_certificate,
        )


def as_utc(moment: datetime) -> datetime:
    # SQLite returns naive datetimes for timezone-aware columns; everything stored is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
