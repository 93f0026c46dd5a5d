"""Verifier: policies, agents under verification, events, webhook deliveries.

Revision ID: 0003_verifier
Revises: 0002_agent_api
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_verifier"
down_revision = "0002_agent_api"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "verifier_policies",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "verifier_agents",
        sa.Column("agent_id", sa.String(64), primary_key=True),
        sa.Column(
            "policy_name", sa.String(64), sa.ForeignKey("verifier_policies.name"), nullable=False
        ),
        sa.Column("ak_public", sa.LargeBinary(), nullable=False),
        sa.Column("agent_url", sa.String(512), nullable=False),
        sa.Column("tls_certificate", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("state_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "verifier_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=False),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("details", sa.Text(), nullable=True),
    )
    op.create_index("ix_verifier_events_agent_id", "verifier_events", ["agent_id"])
    op.create_table(
        "verifier_webhook_deliveries",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "event_id",
            sa.Integer(),
            sa.ForeignKey("verifier_events.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("url", sa.String(512), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("verifier_webhook_deliveries")
    op.drop_index("ix_verifier_events_agent_id", "verifier_events")
    op.drop_table("verifier_events")
    op.drop_table("verifier_agents")
    op.drop_table("verifier_policies")
