"""Verifier: the agent's TPM-resident location key, taken from the registrar.

Revision ID: 0005_verifier_location_key
Revises: 0004_location_key
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_verifier_location_key"
down_revision = "0004_location_key"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("verifier_agents") as batch:
        batch.add_column(sa.Column("location_key_public", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("verifier_agents") as batch:
        batch.drop_column("location_key_public")
