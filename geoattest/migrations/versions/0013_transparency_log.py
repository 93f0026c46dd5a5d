"""Verifier: the transparency log (entries, perfect tree nodes, its state, signed checkpoints)
and content-addressed documents (policy versions, zones files, TPM public areas) for exports.

Revision ID: 0013_transparency_log
Revises: 0012_key_releases
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_transparency_log"
down_revision = "0012_key_releases"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "verifier_log_entries",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("idx", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=True),
        sa.Column("ref_seq", sa.Integer(), nullable=True),
        sa.Column("entry", sa.LargeBinary(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(), nullable=False),
        sa.Column("queued_at", _TIME, nullable=False),
        sa.UniqueConstraint("idx", name="uq_verifier_log_entries_idx"),
    )
    op.create_index(
        "ix_verifier_log_entries_agent", "verifier_log_entries", ["agent_id", "kind", "ref_seq"]
    )
    op.create_table(
        "verifier_log_nodes",
        sa.Column("level", sa.Integer(), primary_key=True),
        sa.Column("idx", sa.BigInteger(), primary_key=True),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "verifier_log_state",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("origin", sa.String(200), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
    )
    op.create_table(
        "verifier_log_checkpoints",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.LargeBinary(), nullable=False),
        sa.Column("signed_at", _TIME, nullable=False),
        sa.Column("kid", sa.String(64), nullable=False),
        sa.Column("jws", sa.Text(), nullable=False),
    )
    op.create_index("ix_verifier_log_checkpoints_size", "verifier_log_checkpoints", ["size"])
    op.create_table(
        "verifier_documents",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("stored_at", _TIME, nullable=False),
    )
    op.create_index("ix_verifier_documents_name", "verifier_documents", ["name"])


def downgrade() -> None:
    op.drop_table("verifier_documents")
    op.drop_table("verifier_log_checkpoints")
    op.drop_table("verifier_log_state")
    op.drop_table("verifier_log_nodes")
    op.drop_table("verifier_log_entries")
