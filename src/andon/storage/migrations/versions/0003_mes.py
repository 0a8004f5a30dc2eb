"""MES: plant structure, orders and runs, state intervals, counts, hour and shift rollups.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Frozen here on purpose (not imported from schema.py): a migration must not change later.
_ACCOUNT_COLUMNS = (
    "running_ms",
    "setup_ms",
    "unplanned_downtime_ms",
    "blocked_ms",
    "starved_ms",
    "planned_downtime_ms",
    "not_scheduled_ms",
    "small_stop_ms",
    "failures",
    "total_count",
    "reject_count",
    "startup_reject_count",
    "unrated_count",
    "ideal_time_us",
    "reject_ideal_time_us",
    "startup_reject_ideal_time_us",
)


def upgrade() -> None:
    op.create_table(
        "mes_asset",
        sa.Column("path", sa.Text, primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("timezone", sa.Text, nullable=True),
        sa.Column("counter_max", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "mes_binding",
        sa.Column("tag_path", sa.Text, primary_key=True),
        sa.Column("asset", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
    )
    op.create_table(
        "mes_state_definition",
        sa.Column("asset", sa.Text, nullable=False),
        sa.Column("code", sa.BigInteger, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("state_type", sa.Text, nullable=False),
        sa.Column("reason_id", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("asset", "code", name="mes_state_definition_pkey"),
    )
    op.create_table(
        "mes_reason",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("parent_id", sa.Text, nullable=True),
    )
    op.create_table(
        "mes_item",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
    )
    op.create_table(
        "mes_ideal_rate",
        sa.Column("item_id", sa.Text, nullable=False),
        sa.Column("asset", sa.Text, nullable=False),
        sa.Column("cycle_ms_numerator", sa.BigInteger, nullable=False),
        sa.Column("cycle_ms_denominator", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("item_id", "asset", name="mes_ideal_rate_pkey"),
    )
    op.create_table(
        "mes_calendar",
        sa.Column("site", sa.Text, primary_key=True),
        sa.Column("definition_json", sa.Text, nullable=False),
    )
    op.create_table(
        "mes_order",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("item_id", sa.Text, nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
    )
    op.create_table(
        "mes_run",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("order_id", sa.Text, nullable=False),
        sa.Column("asset", sa.Text, nullable=False),
        sa.Column("start_ms", sa.BigInteger, nullable=False),
        sa.Column("end_ms", sa.BigInteger, nullable=True),
    )
    op.create_index("mes_run_asset_idx", "mes_run", ["asset", "start_ms"])
    op.create_table(
        "mes_state_interval",
        sa.Column("asset", sa.Text, nullable=False),
        sa.Column("start_ms", sa.BigInteger, nullable=False),
        sa.Column("end_ms", sa.BigInteger, nullable=True),
        sa.Column("code", sa.BigInteger, nullable=False),
        sa.Column("state_type", sa.Text, nullable=False),
        sa.Column("reason_id", sa.Text, nullable=True),
        sa.Column("mode", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("asset", "start_ms", name="mes_state_interval_pkey"),
    )
    op.create_table(
        "mes_count",
        sa.Column("asset", sa.Text, nullable=False),
        sa.Column("ts_ms", sa.BigInteger, nullable=False),
        sa.Column("total", sa.BigInteger, nullable=False),
        sa.Column("reject", sa.BigInteger, nullable=False),
        sa.Column("startup", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("asset", "ts_ms", name="mes_count_pkey"),
    )
    op.create_table(
        "mes_rollup",
        sa.Column("asset", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("start_ms", sa.BigInteger, nullable=False),
        sa.Column("end_ms", sa.BigInteger, nullable=False),
        sa.Column("label", sa.Text, nullable=False),
        *(sa.Column(name, sa.BigInteger, nullable=False) for name in _ACCOUNT_COLUMNS),
        sa.PrimaryKeyConstraint("asset", "kind", "start_ms", name="mes_rollup_pkey"),
    )
    op.create_table(
        "mes_rollup_reason",
        sa.Column("asset", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("start_ms", sa.BigInteger, nullable=False),
        sa.Column("reason_id", sa.Text, nullable=False),
        sa.Column("loss_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint(
            "asset", "kind", "start_ms", "reason_id", name="mes_rollup_reason_pkey"
        ),
    )


def downgrade() -> None:
    for table in (
        "mes_rollup_reason",
        "mes_rollup",
        "mes_count",
        "mes_state_interval",
        "mes_run",
        "mes_order",
        "mes_calendar",
        "mes_ideal_rate",
        "mes_item",
        "mes_reason",
        "mes_state_definition",
        "mes_binding",
        "mes_asset",
    ):
        op.drop_table(table)
