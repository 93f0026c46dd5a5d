"""Key service: when each release or refusal reached the verifier's transparency log.

``logged_at`` stays NULL until ``POST /v1/log/audit`` accepted the entry (the key service's
forwarder retries until then, across restarts); the partial order of ``id`` is the send order.

Revision ID: 0016_key_release_log_forwarding
Revises: 0014_location_key_challenges
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_key_release_log_forwarding"
down_revision = "0015_gnss_receiver"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("key_releases") as batch:
        batch.add_column(sa.Column("logged_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_key_releases_logged_at", "key_releases", ["logged_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_key_releases_logged_at", table_name="key_releases")
    with op.batch_alter_table("key_releases") as batch:
        batch.drop_column("logged_at")
