"""Initial historian schema: tag, sample, quarantine.

Revision ID: 0001
Revises:
Create Date: 2026-05-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tag",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("path", sa.Text, nullable=False, unique=True),
        sa.Column("datatype", sa.SmallInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "sample",
        # No FOREIGN KEY to tag.id, on purpose: PostgreSQL checks it with a trigger per row,
        # which halves COPY ingest. Ids come only from committed rows of the tag table,
        # and tags are never deleted.
        sa.Column("tag_id", sa.Integer, nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("value_double", sa.Double, nullable=True),
        sa.Column("value_int", sa.BigInteger, nullable=True),
        sa.Column("value_text", sa.Text, nullable=True),
        sa.Column("value_bytes", sa.LargeBinary, nullable=True),
        sa.Column("quality", sa.SmallInteger, nullable=False),
        sa.Column("is_historical", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("tag_id", "ts", name="sample_pkey"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tag_path", sa.Text, nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("raw_value", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("quarantine")
    op.drop_table("sample")
    op.drop_table("tag")
