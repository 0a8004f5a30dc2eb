"""MES manual edits: count edits with their corrections, and states added by hand.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mes_count_edit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("asset", sa.Text, nullable=False),
        sa.Column("start_ms", sa.BigInteger, nullable=False),
        sa.Column("end_ms", sa.BigInteger, nullable=False),
        sa.Column("mode", sa.Text, nullable=False),
        sa.Column("infeed", sa.BigInteger, nullable=True),
        sa.Column("outfeed", sa.BigInteger, nullable=True),
        sa.Column("waste", sa.BigInteger, nullable=True),
        sa.Column("infeed_delta", sa.BigInteger, nullable=False),
        sa.Column("outfeed_delta", sa.BigInteger, nullable=False),
        sa.Column("waste_delta", sa.BigInteger, nullable=False),
        sa.Column("username", sa.Text, nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("reverted_ms", sa.BigInteger, nullable=True),
        sa.Column("reverted_by", sa.Text, nullable=True),
    )
    op.create_index("mes_count_edit_asset_idx", "mes_count_edit", ["asset", "start_ms"])
    op.create_table(
        "mes_count_correction",
        sa.Column("edit_id", sa.Integer, nullable=False),
        sa.Column("asset", sa.Text, nullable=False),
        sa.Column("ts_ms", sa.BigInteger, nullable=False),
        sa.Column("total", sa.BigInteger, nullable=False),
        sa.Column("reject", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("edit_id", "ts_ms", name="mes_count_correction_pkey"),
    )
    op.create_index("mes_count_correction_asset_idx", "mes_count_correction", ["asset", "ts_ms"])
    op.create_table(
        "mes_state_override",
        sa.Column("asset", sa.Text, nullable=False),
        sa.Column("start_ms", sa.BigInteger, nullable=False),
        sa.Column("end_ms", sa.BigInteger, nullable=False),
        sa.Column("code", sa.BigInteger, nullable=False),
        sa.Column("reason_id", sa.Text, nullable=True),
        sa.Column("username", sa.Text, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("asset", "start_ms", name="mes_state_override_pkey"),
    )


def downgrade() -> None:
    op.drop_table("mes_state_override")
    op.drop_index("mes_count_correction_asset_idx", table_name="mes_count_correction")
    op.drop_table("mes_count_correction")
    op.drop_index("mes_count_edit_asset_idx", table_name="mes_count_edit")
    op.drop_table("mes_count_edit")
