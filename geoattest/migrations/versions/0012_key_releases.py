"""Key service: every release and refusal of a model key.

Revision ID: 0012_key_releases
Revises: 0011_tokens
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_key_releases"
down_revision = "0011_tokens"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "key_releases",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("agent_id", sa.String(64), nullable=True),
        sa.Column("token_jti", sa.String(64), nullable=True),
        sa.Column("workload_sha256", sa.LargeBinary(), nullable=True),
        sa.Column("zone_id", sa.String(64), nullable=True),
        sa.Column("record_seq", sa.Integer(), nullable=True),
    )
    op.create_index("ix_key_releases_key_at", "key_releases", ["key_id", "at"])


def downgrade() -> None:
    op.drop_table("key_releases")
