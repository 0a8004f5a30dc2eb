"""The MES outbox (site -> enterprise forwarding) and the enterprise's copy of every site's records.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("site", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("record_key", sa.Text, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("record_json", sa.Text, nullable=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        # AUTOINCREMENT: ids are never reused on SQLite, even once every row was pruned.
        sqlite_autoincrement=True,
    )
    op.create_index("outbox_record_idx", "outbox", ["kind", "record_key"])
    op.create_table(
        "outbox_site",
        sa.Column("site", sa.Text, primary_key=True),
        sa.Column("seeded_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "enterprise_record",
        sa.Column("site", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("record_key", sa.Text, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("record_json", sa.Text, nullable=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("received_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("site", "kind", "record_key", name="enterprise_record_pkey"),
    )
    op.create_index("enterprise_record_version_idx", "enterprise_record", ["site", "version"])


def downgrade() -> None:
    op.drop_index("enterprise_record_version_idx", table_name="enterprise_record")
    op.drop_table("enterprise_record")
    op.drop_table("outbox_site")
    op.drop_index("outbox_record_idx", table_name="outbox")
    op.drop_table("outbox")
