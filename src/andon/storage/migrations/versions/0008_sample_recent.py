"""The arrival-ordered staging table of a wide plant's samples and the version of ``sample``
(SQLite; see schema.py).

Created on every backend so that the schema is the same everywhere; only the SQLite store
writes to it (PostgreSQL appends to a heap and does not pay a page per value).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sample_recent",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("tag_id", sa.Integer, nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("value_double", sa.Double, nullable=True),
        sa.Column("value_int", sa.BigInteger, nullable=True),
        sa.Column("value_text", sa.Text, nullable=True),
        sa.Column("value_bytes", sa.LargeBinary, nullable=True),
        sa.Column("quality", sa.SmallInteger, nullable=False),
        sa.Column("is_historical", sa.Boolean, nullable=False),
    )
    op.create_index("sample_recent_key_idx", "sample_recent", ["tag_id", "ts"], unique=True)
    op.create_table(
        "sample_version",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO sample_version (id, version) VALUES (1, 0)")


def downgrade() -> None:
    # Rows still staged belong in ``sample``: move them before the table goes.
    op.execute(
        "INSERT INTO sample (tag_id, ts, value_double, value_int, value_text, value_bytes,"
        " quality, is_historical) SELECT tag_id, ts, value_double, value_int, value_text,"
        " value_bytes, quality, is_historical FROM sample_recent WHERE true"
        " ON CONFLICT (tag_id, ts) DO NOTHING"
    )
    op.drop_table("sample_version")
    op.drop_index("sample_recent_key_idx", table_name="sample_recent")
    op.drop_table("sample_recent")
