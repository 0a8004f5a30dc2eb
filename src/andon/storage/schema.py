"""The historian schema as SQLAlchemy Core metadata.

This is the reference the queries are written against. The database itself is created by the
alembic migrations in ``andon.storage.migrations``; a test compares the two so they cannot drift.
Timestamps are BIGINT UTC milliseconds everywhere (SQLite has no time zone aware type, and
integer keys keep the (tag_id, ts) primary key compact and fast).
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["metadata", "quarantine_table", "sample_table", "tag_table"]

metadata = sa.MetaData()

tag_table = sa.Table(
    "tag",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("path", sa.Text, nullable=False, unique=True),
    # Sparkplug datatype code, fixed when the tag is first seen; decides how values decode.
    sa.Column("datatype", sa.SmallInteger, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

sample_table = sa.Table(
    "sample",
    metadata,
    # No FOREIGN KEY to tag.id, on purpose: PostgreSQL checks it with a trigger per row,
    # which halves COPY ingest. Ids come only from the tag table, in the same transaction,
    # and tags are never deleted.
    sa.Column("tag_id", sa.Integer, nullable=False),
    sa.Column("ts", sa.BigInteger, nullable=False),
    # At most one value column is set per row; see andon.storage.codec for the mapping.
    sa.Column("value_double", sa.Double, nullable=True),
    sa.Column("value_int", sa.BigInteger, nullable=True),
    sa.Column("value_text", sa.Text, nullable=True),
    sa.Column("value_bytes", sa.LargeBinary, nullable=True),
    sa.Column("quality", sa.SmallInteger, nullable=False),
    sa.Column("is_historical", sa.Boolean, nullable=False),
    # Idempotency: one value per tag and instant; a duplicate insert is ignored.
    sa.PrimaryKeyConstraint("tag_id", "ts", name="sample_pkey"),
    # SQLite: cluster rows on the primary key instead of keeping a rowid table plus an index.
    sqlite_with_rowid=False,
)

quarantine_table = sa.Table(
    "quarantine",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # The path, not a tag id: the poison sample may be the one that would have created the tag.
    sa.Column("tag_path", sa.Text, nullable=False),
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.Column("raw_value", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)
