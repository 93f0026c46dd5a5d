"""Registrar: the TPM-resident location key and its TPM2_Certify by the AK.

Revision ID: 0004_location_key
Revises: 0003_verifier
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_location_key"
down_revision = "0003_verifier"
branch_labels = None
depends_on = None

_COLUMNS = ("location_key_public", "location_key_certify_attest", "location_key_certify_signature")


def upgrade() -> None:
    for table in ("registrar_agents", "registrar_challenges"):
        with op.batch_alter_table(table) as batch:
            for name in _COLUMNS:
                batch.add_column(sa.Column(name, sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    for table in ("registrar_agents", "registrar_challenges"):
        with op.batch_alter_table(table) as batch:
            for name in reversed(_COLUMNS):
                batch.drop_column(name)
