"""Verifier: evidence records and folds, the lease and chain columns, policy digests.

Revision ID: 0008_evidence_records
Revises: 0007_pending_enrolments
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_evidence_records"
down_revision = "0007_pending_enrolments"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("verifier_agents") as batch:
        batch.add_column(sa.Column("details", sa.Text(), nullable=True))
        batch.add_column(sa.Column("fence", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("chain_seq", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("chain_head", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("last_round_at", _TIME, nullable=True))
        batch.add_column(sa.Column("last_passed_at", _TIME, nullable=True))
        batch.add_column(sa.Column("last_sample_at", _TIME, nullable=True))
        batch.add_column(sa.Column("ima_entries_verified", sa.Integer(), nullable=True))
    with op.batch_alter_table("verifier_policies") as batch:
        batch.add_column(sa.Column("sha256", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("max_age_seconds", sa.Float(), nullable=True))
    with op.batch_alter_table("verifier_events") as batch:
        batch.add_column(sa.Column("round_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("record_seq", sa.Integer(), nullable=True))
    op.create_table(
        "verifier_records",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("round_id", sa.String(32), nullable=False),
        sa.Column("started_at", _TIME, nullable=False),
        sa.Column("ended_at", _TIME, nullable=False),
        sa.Column("outcome", sa.String(24), nullable=True),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("kept", sa.Boolean(), nullable=False),
        sa.Column("digest", sa.LargeBinary(), nullable=False),
        sa.Column("prev", sa.LargeBinary(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.UniqueConstraint("agent_id", "seq", name="uq_verifier_records_agent_seq"),
    )
    op.create_index("ix_verifier_records_agent_ended", "verifier_records", ["agent_id", "ended_at"])
    op.create_index("ix_verifier_records_fold", "verifier_records", ["kept", "ended_at"])
    op.create_table(
        "verifier_record_folds",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("first_seq", sa.Integer(), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("first_at", _TIME, nullable=False),
        sa.Column("last_at", _TIME, nullable=False),
        sa.Column("prev", sa.LargeBinary(), nullable=False),
        sa.Column("head", sa.LargeBinary(), nullable=False),
        sa.Column("outcomes", sa.Text(), nullable=False),
        sa.UniqueConstraint("agent_id", "first_seq", name="uq_verifier_record_folds_agent_first"),
    )
    op.create_index("ix_verifier_record_folds_agent_id", "verifier_record_folds", ["agent_id"])


def downgrade() -> None:
    op.drop_table("verifier_record_folds")
    op.drop_table("verifier_records")
    with op.batch_alter_table("verifier_events") as batch:
        batch.drop_column("record_seq")
        batch.drop_column("round_id")
    with op.batch_alter_table("verifier_policies") as batch:
        batch.drop_column("max_age_seconds")
        batch.drop_column("sha256")
    with op.batch_alter_table("verifier_agents") as batch:
        for column in (
            "ima_entries_verified", "last_sample_at", "last_passed_at", "last_round_at",
            "chain_head", "chain_seq", "fence", "details",
        ):  # fmt: skip
            batch.drop_column(column)
