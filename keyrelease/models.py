"""The key service's table: every release and refusal."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from geoattest.db import Base


class KeyReleaseRow(Base):
    __tablename__ = "key_releases"
    __table_args__ = (
        Index("ix_key_releases_key_at", "key_id", "at"),
        Index("ix_key_releases_logged_at", "logged_at", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    key_id: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))  # released | refused
    reason: Mapped[str | None] = mapped_column(String(64))  # why refused (stable code)
    message: Mapped[str | None] = mapped_column(Text)
    agent_id: Mapped[str | None] = mapped_column(String(64))
    token_jti: Mapped[str | None] = mapped_column(String(64))
    workload_sha256: Mapped[bytes | None] = mapped_column(LargeBinary)
    zone_id: Mapped[str | None] = mapped_column(String(64))
    record_seq: Mapped[int | None] = mapped_column(Integer)
    # when the verifier's transparency log accepted it (NULL: not yet; keyrelease.log_forward)
    logged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
