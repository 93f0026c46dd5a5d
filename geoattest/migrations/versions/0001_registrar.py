"""Registrar: agents and pending credential challenges.

Revision ID: 0001_registrar
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_registrar"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registrar_agents",
        sa.Column("agent_id", sa.String(64), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("ek_certificate", sa.LargeBinary(), nullable=False),
        sa.Column("ek_fingerprint", sa.String(64), nullable=False, unique=True),
        sa.Column("ek_public", sa.LargeBinary(), nullable=False),
        sa.Column("ak_public", sa.LargeBinary(), nullable=True),
        sa.Column("ak_name", sa.LargeBinary(), nullable=True),
        sa.Column("ek_anchor_subject", sa.String(512), nullable=False),
        sa.Column("ek_anchor_fingerprint", sa.String(64), nullable=False),
        sa.Column("tpm_manufacturer", sa.String(64), nullable=True),
        sa.Column("tpm_model", sa.String(128), nullable=True),
        sa.Column("purchase_order", sa.String(128), nullable=True),
        sa.Column("asset_tag", sa.String(128), nullable=True),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "registrar_challenges",
        sa.Column(
            "agent_id",
            sa.String(64),
            sa.ForeignKey("registrar_agents.agent_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("ak_public", sa.LargeBinary(), nullable=False),
        sa.Column("ak_name", sa.LargeBinary(), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("failed_attempts", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("registrar_challenges")
    op.drop_table("registrar_agents")
