"""Registrar: the digest of the enrolment request that the activation proof binds.

Revision ID: 0006_enrolment_digest
Revises: 0005_verifier_location_key
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_enrolment_digest"
down_revision = "0005_verifier_location_key"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Challenges open before the upgrade have no digest: no proof matches, they re-enrol.
    with op.batch_alter_table("registrar_challenges") as batch:
        batch.add_column(sa.Column("request_digest", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("registrar_challenges") as batch:
        batch.drop_column("request_digest")
