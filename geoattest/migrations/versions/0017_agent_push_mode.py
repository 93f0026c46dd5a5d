"""Verifier agents: how each one is attested, ``pull`` (the verifier fetches evidence from the
agent's API) or ``push`` (the agent asks for a challenge and posts its evidence, ADR 19).

Existing agents are pull agents: that is all there was.

Revision ID: 0017_agent_push_mode
Revises: 0016_key_release_log_forwarding
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_agent_push_mode"
down_revision = "0016_key_release_log_forwarding"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("verifier_agents") as batch:
        batch.add_column(
            sa.Column("mode", sa.String(8), nullable=False, server_default=sa.text("'pull'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("verifier_agents") as batch:
        batch.drop_column("mode")
