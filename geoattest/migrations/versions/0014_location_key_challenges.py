"""Registrar: location-key rotation answers a fresh registrar challenge.

``registrar_location_challenges`` holds the single-use nonces issued by
``POST /v1/agents/<id>/location-key/challenge``; ``registrar_agents.location_key_nonce`` records
which one the registered certification answered (NULL: certified at enrolment), so that a
verifier can re-derive its qualifying data.

Revision ID: 0014_location_key_challenges
Revises: 0013_transparency_log
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_location_key_challenges"
down_revision = "0013_transparency_log"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registrar_location_challenges",
        sa.Column("nonce", sa.LargeBinary(), primary_key=True),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_registrar_location_challenges_agent_id", "registrar_location_challenges", ["agent_id"]
    )
    with op.batch_alter_table("registrar_agents") as batch:
        batch.add_column(sa.Column("location_key_nonce", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("registrar_agents") as batch:
        batch.drop_column("location_key_nonce")
    op.drop_index("ix_registrar_location_challenges_agent_id", "registrar_location_challenges")
    op.drop_table("registrar_location_challenges")
