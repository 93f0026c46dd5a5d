"""The typed identity record of an enrolled agent, as the rest of the registrar passes it around."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from geoattest.db import as_utc
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
    location_key_public: bytes | None
    location_key_certify_attest: bytes | None
    location_key_certify_signature: bytes | None
    location_key_nonce: bytes | None = None
    gnss_receiver: bytes | None = None  # canonical JSON (``wire.receiver_canonical``)

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
            location_key_public=record.location_key_public,
            location_key_certify_attest=record.location_key_certify_attest,
            location_key_certify_signature=record.location_key_certify_signature,
            location_key_nonce=record.location_key_nonce,
            gnss_receiver=record.gnss_receiver,
        )
