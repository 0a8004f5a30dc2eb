"""The schedule: planned runs per asset (the supervisor's Gantt).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mes_scheduled_run",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("order_id", sa.Text, nullable=False),
        sa.Column("asset", sa.Text, nullable=False),
        sa.Column("start_ms", sa.BigInteger, nullable=False),
        sa.Column("end_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("mes_scheduled_run_asset_idx", "mes_scheduled_run", ["asset", "start_ms"])


def downgrade() -> None:
    op.drop_index("mes_scheduled_run_asset_idx", table_name="mes_scheduled_run")
    op.drop_table("mes_scheduled_run")
