"""Registrar: pending enrolments apart from identities, and no challenge secret at rest.

The challenge table kept each secret in plain (anyone reading the database could activate a
victim's EK with a software AK) and one challenge per agent id (a re-posted request replaced the
genuine node's). Enrolments now wait in ``registrar_enrolments`` with a keyed hash of the
expected proof only; open challenges are dropped (agents enrol again, a challenge lives minutes),
and so are identity rows that were never activated: only an activation writes one now.

Revision ID: 0007_pending_enrolments
Revises: 0006_enrolment_digest
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_pending_enrolments"
down_revision = "0006_enrolment_digest"
branch_labels = None
depends_on = None

_LOCATION_KEY = (
    "location_key_public",
    "location_key_certify_attest",
    "location_key_certify_signature",
)


def upgrade() -> None:
    op.create_table(
        "registrar_enrolments",
        sa.Column("enrolment_id", sa.String(32), primary_key=True),
        sa.Column("agent_id", sa.String(64), nullable=False, index=True),
        sa.Column("ek_fingerprint", sa.String(64), nullable=False, index=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("request_digest", sa.LargeBinary(), nullable=False),
        sa.Column("proof_check", sa.LargeBinary(), nullable=False),
        sa.Column("ek_certificate", sa.LargeBinary(), nullable=False),
        sa.Column("ek_public", sa.LargeBinary(), nullable=False),
        sa.Column("ek_anchor_subject", sa.String(512), nullable=False),
        sa.Column("ek_anchor_fingerprint", sa.String(64), nullable=False),
        sa.Column("tpm_manufacturer", sa.String(64), nullable=True),
        sa.Column("tpm_model", sa.String(128), nullable=True),
        sa.Column("purchase_order", sa.String(128), nullable=True),
        sa.Column("asset_tag", sa.String(128), nullable=True),
        sa.Column("ak_public", sa.LargeBinary(), nullable=False),
        sa.Column("ak_name", sa.LargeBinary(), nullable=False),
        sa.Column("agent_url", sa.String(512), nullable=True),
        sa.Column("tls_certificate", sa.LargeBinary(), nullable=True),
        *(sa.Column(name, sa.LargeBinary(), nullable=True) for name in _LOCATION_KEY),
    )
    op.drop_table("registrar_challenges")
    op.execute(sa.text("DELETE FROM registrar_agents WHERE state <> 'active'"))


def downgrade() -> None:
    # The challenge table comes back empty: pending enrolments are not carried back (their
    # secrets were never kept), agents enrol again.
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
        sa.Column("agent_url", sa.String(512), nullable=True),
        sa.Column("tls_certificate", sa.LargeBinary(), nullable=True),
        *(sa.Column(name, sa.LargeBinary(), nullable=True) for name in _LOCATION_KEY),
        sa.Column("request_digest", sa.LargeBinary(), nullable=True),
    )
    op.drop_table("registrar_enrolments")
