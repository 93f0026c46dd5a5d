"""Registrar: names taken from certificates and the pins file lose their length caps.

PostgreSQL enforces ``VARCHAR(n)``, so an EK certificate with a long TPM model, a trust anchor
with a long subject or a long purchase order refused the enrolment there (SQLite ignores the
lengths); in identities and pending enrolments alike. On SQLite nothing changes: its
``VARCHAR(n)`` is already unbounded text, and changing a declared type there means rebuilding
the tables.

Revision ID: 0010_registrar_unbounded_names
Revises: 0009_api_keys
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_registrar_unbounded_names"
down_revision = "0009_api_keys"
branch_labels = None
depends_on = None

_LENGTHS = {
    "ek_anchor_subject": 512,
    "tpm_manufacturer": 64,
    "tpm_model": 128,
    "purchase_order": 128,
    "asset_tag": 128,
}


_TABLES = ("registrar_agents", "registrar_enrolments")  # identities, and pending enrolments


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table in _TABLES:
        for column, length in _LENGTHS.items():
            op.alter_column(table, column, type_=sa.String(), existing_type=sa.String(length))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table in _TABLES:
        for column, length in _LENGTHS.items():
            op.alter_column(table, column, type_=sa.String(length), existing_type=sa.String())
