"""Cluster: member heartbeats and one leadership lease per domain of control.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cluster_member",
        sa.Column("node", sa.Text, primary_key=True),
        sa.Column("info_json", sa.Text, nullable=False),
        sa.Column("last_seen_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "cluster_lease",
        sa.Column("domain", sa.Text, primary_key=True),
        sa.Column("node", sa.Text, nullable=True),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        sa.Column("acquired_at_ms", sa.BigInteger, nullable=False),
        sa.Column("renewed_at_ms", sa.BigInteger, nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger, nullable=False),
        sa.Column("switchover_from", sa.Text, nullable=True),
        sa.Column("switchover_to", sa.Text, nullable=True),
        sa.Column("switchover_requested_at_ms", sa.BigInteger, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("cluster_lease")
    op.drop_table("cluster_member")
