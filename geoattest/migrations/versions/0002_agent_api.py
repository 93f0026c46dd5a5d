"""Registrar: the agent API's address and pinned TLS certificate.

Revision ID: 0002_agent_api
Revises: 0001_registrar
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_agent_api"
down_revision = "0001_registrar"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("registrar_agents", "registrar_challenges"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("agent_url", sa.String(512), nullable=True))
            batch.add_column(sa.Column("tls_certificate", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    for table in ("registrar_agents", "registrar_challenges"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("tls_certificate")
            batch.drop_column("agent_url")
