"""GNSS receiver identity recorded at enrolment.

``registrar_enrolments.gnss_receiver`` / ``registrar_agents.gnss_receiver``: the receiver an
agent enrolled with, as RFC 8785 canonical JSON (``geoattest.wire.receiver_canonical``), written
by the activation that proved the enrolment (NULL: the agent reported none).
``verifier_agents.gnss_receiver``: the same bytes, taken from the registrar's signed record when
the agent was added or refreshed; each round's receiver is compared with it.

Revision ID: 0015_gnss_receiver
Revises: 0014_location_key_challenges
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_gnss_receiver"
down_revision = "0014_location_key_challenges"
branch_labels = None
depends_on = None

_TABLES = ("registrar_enrolments", "registrar_agents", "verifier_agents")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("gnss_receiver", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    for table in reversed(_TABLES):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("gnss_receiver")
