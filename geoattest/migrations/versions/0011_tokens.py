"""Verifier: issued PoR/PoG tokens, and the EK certificate digest tokens name.

Revision ID: 0011_tokens
Revises: 0010_registrar_unbounded_names
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_tokens"
down_revision = "0010_registrar_unbounded_names"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("verifier_agents") as batch:
        batch.add_column(sa.Column("ek_certificate_sha256", sa.LargeBinary(), nullable=True))
    op.create_table(
        "verifier_tokens",
        sa.Column("jti", sa.String(32), primary_key=True),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(8), nullable=False),
        sa.Column("audience", sa.String(256), nullable=False),
        sa.Column("workload_sha256", sa.LargeBinary(), nullable=False),
        sa.Column("issued_at", _TIME, nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
        sa.Column("record_seq", sa.Integer(), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("revoked_at", _TIME, nullable=True),
    )
    op.create_index("ix_verifier_tokens_agent_issued", "verifier_tokens", ["agent_id", "issued_at"])
    op.create_index(
        "ix_verifier_tokens_agent_expires", "verifier_tokens", ["agent_id", "expires_at"]
    )
    op.create_index("ix_verifier_tokens_revoked", "verifier_tokens", ["revoked_at", "expires_at"])


def downgrade() -> None:
    op.drop_table("verifier_tokens")
    with op.batch_alter_table("verifier_agents") as batch:
        batch.drop_column("ek_certificate_sha256")
