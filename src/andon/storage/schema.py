"""The historian schema as SQLAlchemy Core metadata.

This is the reference the queries are written against. The database itself is created by the
alembic migrations in ``andon.storage.migrations``; a test compares the two so they cannot drift.
Timestamps are BIGINT UTC milliseconds everywhere (SQLite has no time zone aware type, and
integer keys keep the (tag_id, ts) primary key compact and fast).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

__all__ = [
    "api_token_table",
    "app_user_table",
    "audit_log_table",
    "metadata",
    "quarantine_table",
    "sample_recent_table",
    "sample_table",
    "sample_version_table",
    "tag_table",
]

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


def _sample_columns() -> list[sa.Column[Any]]:
    """The columns of a sample row (``sample`` and ``sample_recent``: new objects per table)."""
    return [
        # No FOREIGN KEY to tag.id, on purpose: PostgreSQL checks it with a trigger per row,
        # which halves COPY ingest. Ids come only from committed rows of the tag table,
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
    ]


sample_table = sa.Table(
    "sample",
    metadata,
    *_sample_columns(),
    # Idempotency: one value per tag and instant; a duplicate insert is ignored.
    sa.PrimaryKeyConstraint("tag_id", "ts", name="sample_pkey"),
    # SQLite: cluster rows on the primary key instead of keeping a rowid table plus an index.
    sqlite_with_rowid=False,
)

# Samples of a wide plant on SQLite, in arrival order, until they move to ``sample`` in bulk
# (migration 0008; andon.storage.sqlite). ``sample`` is clustered by (tag, time), so a commit
# writes a page for every tag it touches: 25,000 tags at 1 Hz committed every second wrote a
# 4 KiB page (and its checkpoint copy) per value. Here a commit appends; a merge every few
# hundred thousand rows then writes each tag's page once for all the values it gathered.
# The unique index keeps one row per (tag, instant) here as the primary key does there.
sample_recent_table = sa.Table(
    "sample_recent",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    *_sample_columns(),
    sa.Index("sample_recent_key_idx", "tag_id", "ts", unique=True),
)

# One row, bumped by every write into ``sample`` (SQLite): a store that finds another version
# than the one it last wrote knows another writer of the file changed ``sample`` meanwhile and
# forgets what it knew of each tag's newest stored row (andon.storage.sqlite).
sample_version_table = sa.Table(
    "sample_version",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version", sa.BigInteger, nullable=False),
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

app_user_table = sa.Table(
    "app_user",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("username", sa.Text, nullable=False, unique=True),
    # argon2id in PHC string form: algorithm, parameters and salt travel with the hash.
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("display_name", sa.Text, nullable=False),
    # Users are disabled, never deleted: the audit trail keeps naming them.
    sa.Column("disabled", sa.Boolean, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
)

api_token_table = sa.Table(
    "api_token",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # Only the SHA-256 of a token is stored: a copy of the database logs nobody in. A plain
    # hash suffices (no argon2) because tokens are 256 random bits, not guessable words.
    sa.Column("token_sha256", sa.Text, nullable=False, unique=True),
    sa.Column(
        "user_id",
        sa.Integer,
        sa.ForeignKey("app_user.id", name="api_token_user_fkey"),
        nullable=False,
        index=True,
    ),
    sa.Column("kind", sa.Text, nullable=False),  # 'api' or 'session'
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("expires_at_ms", sa.BigInteger, nullable=False),
    sa.Column("last_used_ms", sa.BigInteger, nullable=True),
)

audit_log_table = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    # The name, not a user id: the entry must stay readable whatever happens to the account.
    sa.Column("username", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("entity", sa.Text, nullable=False),
    sa.Column("entity_id", sa.Text, nullable=False),
    sa.Column("before_json", sa.Text, nullable=True),
    sa.Column("after_json", sa.Text, nullable=True),
    sa.Column("comment", sa.Text, nullable=False),
    sa.Index("audit_log_entity_idx", "entity", "entity_id", "id"),
)

# == MES (migration 0003_mes) ====================================================================
# Plant structure from the plant file (replaced on every load), orders and runs (owned by the
# database once loaded), and what the MES service derives at ingest: state intervals, counts and
# hour/shift rollups. Asset paths are the text form "Site/Area/Line/Cell".

__all__ += [
    "MES_ACCOUNT_COLUMNS",
    "mes_asset_table",
    "mes_binding_table",
    "mes_calendar_table",
    "mes_count_table",
    "mes_ideal_rate_table",
    "mes_item_table",
    "mes_order_table",
    "mes_reason_table",
    "mes_rollup_reason_table",
    "mes_rollup_table",
    "mes_run_table",
    "mes_state_definition_table",
    "mes_state_interval_table",
]

#: The additive integer fields of a ``TimeAccount`` kept per rollup (no_data is derived).
MES_ACCOUNT_COLUMNS = (
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

mes_asset_table = sa.Table(
    "mes_asset",
    metadata,
    sa.Column("path", sa.Text, primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),  # plant file order: parents first
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("timezone", sa.Text, nullable=True),
    sa.Column("counter_max", sa.BigInteger, nullable=True),
)

mes_binding_table = sa.Table(
    "mes_binding",
    metadata,
    sa.Column("tag_path", sa.Text, primary_key=True),
    sa.Column("asset", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),  # state, mode, infeed, outfeed, waste
)

mes_state_definition_table = sa.Table(
    "mes_state_definition",
    metadata,
    sa.Column("asset", sa.Text, nullable=False),
    sa.Column("code", sa.BigInteger, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("state_type", sa.Text, nullable=False),
    sa.Column("reason_id", sa.Text, nullable=True),
    sa.PrimaryKeyConstraint("asset", "code", name="mes_state_definition_pkey"),
)

mes_reason_table = sa.Table(
    "mes_reason",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("parent_id", sa.Text, nullable=True),
)

mes_item_table = sa.Table(
    "mes_item",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
)

mes_ideal_rate_table = sa.Table(
    "mes_ideal_rate",
    metadata,
    sa.Column("item_id", sa.Text, nullable=False),
    sa.Column("asset", sa.Text, nullable=False),
    # The exact cycle time in ms as a fraction (120/min is 500 ms, 7/min is 60000/7 ms).
    sa.Column("cycle_ms_numerator", sa.BigInteger, nullable=False),
    sa.Column("cycle_ms_denominator", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("item_id", "asset", name="mes_ideal_rate_pkey"),
)

mes_calendar_table = sa.Table(
    "mes_calendar",
    metadata,
    sa.Column("site", sa.Text, primary_key=True),
    sa.Column("definition_json", sa.Text, nullable=False),
)

mes_order_table = sa.Table(
    "mes_order",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("item_id", sa.Text, nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
)

mes_run_table = sa.Table(
    "mes_run",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("order_id", sa.Text, nullable=False),
    sa.Column("asset", sa.Text, nullable=False),
    sa.Column("start_ms", sa.BigInteger, nullable=False),
    sa.Column("end_ms", sa.BigInteger, nullable=True),  # NULL: still running
    sa.Index("mes_run_asset_idx", "asset", "start_ms"),
)

mes_state_interval_table = sa.Table(
    "mes_state_interval",
    metadata,
    sa.Column("asset", sa.Text, nullable=False),
    sa.Column("start_ms", sa.BigInteger, nullable=False),
    sa.Column("end_ms", sa.BigInteger, nullable=True),  # NULL: the open interval
    sa.Column("code", sa.BigInteger, nullable=False),
    sa.Column("state_type", sa.Text, nullable=False),
    sa.Column("reason_id", sa.Text, nullable=True),
    sa.Column("mode", sa.Text, nullable=False),
    sa.PrimaryKeyConstraint("asset", "start_ms", name="mes_state_interval_pkey"),
)

mes_count_table = sa.Table(
    "mes_count",
    metadata,
    # Units seen at ts_ms (counter deltas of the asset's counters ending there, combined).
    sa.Column("asset", sa.Text, nullable=False),
    sa.Column("ts_ms", sa.BigInteger, nullable=False),
    sa.Column("total", sa.BigInteger, nullable=False),
    sa.Column("reject", sa.BigInteger, nullable=False),
    sa.Column("startup", sa.Boolean, nullable=False),
    sa.PrimaryKeyConstraint("asset", "ts_ms", name="mes_count_pkey"),
)

mes_rollup_table = sa.Table(
    "mes_rollup",
    metadata,
    sa.Column("asset", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),  # hour or shift
    sa.Column("start_ms", sa.BigInteger, nullable=False),
    sa.Column("end_ms", sa.BigInteger, nullable=False),
    sa.Column("label", sa.Text, nullable=False),  # shift instance key, e.g. 2026-03-29/Night
    *(sa.Column(name, sa.BigInteger, nullable=False) for name in MES_ACCOUNT_COLUMNS),
    sa.PrimaryKeyConstraint("asset", "kind", "start_ms", name="mes_rollup_pkey"),
)

mes_rollup_reason_table = sa.Table(
    "mes_rollup_reason",
    metadata,
    # Availability loss by reason per rollup bucket ("" = no reason), summed for Pareto charts.
    sa.Column("asset", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("start_ms", sa.BigInteger, nullable=False),
    sa.Column("reason_id", sa.Text, nullable=False),
    sa.Column("loss_ms", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint(
        "asset", "kind", "start_ms", "reason_id", name="mes_rollup_reason_pkey"
    ),
)

# == Cluster (migration 0004_cluster) ===========================================================
# Heartbeats of the nodes and one leadership lease per domain of control. Times are the
# arbiter database's clock in UTC ms (never a node's clock: nodes may disagree).

__all__ += ["cluster_lease_table", "cluster_member_table"]

cluster_member_table = sa.Table(
    "cluster_member",
    metadata,
    sa.Column("node", sa.Text, primary_key=True),
    sa.Column("info_json", sa.Text, nullable=False),  # what the node says about itself
    sa.Column("last_seen_ms", sa.BigInteger, nullable=False),
)

cluster_lease_table = sa.Table(
    "cluster_lease",
    metadata,
    sa.Column("domain", sa.Text, primary_key=True),
    # The holder, or the last holder once expired or released; NULL: never held.
    sa.Column("node", sa.Text, nullable=True),
    # Incremented by every takeover (never by a renewal): the fencing token's number.
    sa.Column("epoch", sa.BigInteger, nullable=False),
    sa.Column("acquired_at_ms", sa.BigInteger, nullable=False),
    sa.Column("renewed_at_ms", sa.BigInteger, nullable=False),
    sa.Column("expires_at_ms", sa.BigInteger, nullable=False),
    # A pending manual switchover: away from switchover_from, to switchover_to (NULL: to the
    # best other candidate). Cleared by the next takeover.
    sa.Column("switchover_from", sa.Text, nullable=True),
    sa.Column("switchover_to", sa.Text, nullable=True),
    sa.Column("switchover_requested_at_ms", sa.BigInteger, nullable=True),
)

# == MES manual edits (migration 0005_count_edits) ===============================================
# Count edits with the signed corrections they add (the derived counts stay as the PLC gave them),
# and states added by hand over a period (the PLC's codes stay in the history underneath).

__all__ += ["mes_count_correction_table", "mes_count_edit_table", "mes_state_override_table"]

mes_count_edit_table = sa.Table(
    "mes_count_edit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("asset", sa.Text, nullable=False),
    sa.Column("start_ms", sa.BigInteger, nullable=False),
    sa.Column("end_ms", sa.BigInteger, nullable=False),
    sa.Column("mode", sa.Text, nullable=False),  # set or add
    # What was asked (NULL: not given) and the change it made to infeed, outfeed and waste.
    sa.Column("infeed", sa.BigInteger, nullable=True),
    sa.Column("outfeed", sa.BigInteger, nullable=True),
    sa.Column("waste", sa.BigInteger, nullable=True),
    sa.Column("infeed_delta", sa.BigInteger, nullable=False),
    sa.Column("outfeed_delta", sa.BigInteger, nullable=False),
    sa.Column("waste_delta", sa.BigInteger, nullable=False),
    sa.Column("username", sa.Text, nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("reverted_ms", sa.BigInteger, nullable=True),  # NULL: in force
    sa.Column("reverted_by", sa.Text, nullable=True),
    sa.Index("mes_count_edit_asset_idx", "asset", "start_ms"),
)

mes_count_correction_table = sa.Table(
    "mes_count_correction",
    metadata,
    # One edit's signed share of one segment (hour or shift piece), seen at ts_ms; deleted when
    # the edit is reverted.
    sa.Column("edit_id", sa.Integer, nullable=False),
    sa.Column("asset", sa.Text, nullable=False),
    sa.Column("ts_ms", sa.BigInteger, nullable=False),
    sa.Column("total", sa.BigInteger, nullable=False),
    sa.Column("reject", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("edit_id", "ts_ms", name="mes_count_correction_pkey"),
    sa.Index("mes_count_correction_asset_idx", "asset", "ts_ms"),
)

mes_state_override_table = sa.Table(
    "mes_state_override",
    metadata,
    sa.Column("asset", sa.Text, nullable=False),
    sa.Column("start_ms", sa.BigInteger, nullable=False),
    sa.Column("end_ms", sa.BigInteger, nullable=False),
    sa.Column("code", sa.BigInteger, nullable=False),
    sa.Column("reason_id", sa.Text, nullable=True),
    sa.Column("username", sa.Text, nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("asset", "start_ms", name="mes_state_override_pkey"),
)

# == Schedule (migration 0006_schedule) ==========================================================

__all__ += ["mes_scheduled_run_table"]

mes_scheduled_run_table = sa.Table(
    "mes_scheduled_run",
    metadata,
    # A plan, not production: never in counts, rollups or OEE (andon.storage.mes_schedule).
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("order_id", sa.Text, nullable=False),
    sa.Column("asset", sa.Text, nullable=False),
    sa.Column("start_ms", sa.BigInteger, nullable=False),  # planned start
    sa.Column("end_ms", sa.BigInteger, nullable=False),  # planned end
    sa.Index("mes_scheduled_run_asset_idx", "asset", "start_ms"),
)

# == Outbox and enterprise records (migration 0007_outbox) =======================================
# Every committed MES record change, written in the transaction of the change and published by
# the dispatcher (andon.server.outbox_dispatcher); on an enterprise server, the newest version of
# every site's records (andon.storage.enterprise).

__all__ += ["enterprise_record_table", "outbox_site_table", "outbox_table"]

outbox_table = sa.Table(
    "outbox",
    metadata,
    # The message's version: never reused (SQLite AUTOINCREMENT), so a record's later change
    # always carries a higher number, even after the table was emptied.
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("site", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),  # state_interval, count, rollup, run, ...
    sa.Column("record_key", sa.Text, nullable=False),  # JSON array of the key columns
    sa.Column("deleted", sa.Boolean, nullable=False),  # a tombstone
    sa.Column("record_json", sa.Text, nullable=True),  # the full record; NULL for a tombstone
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Index("outbox_record_idx", "kind", "record_key"),
    sqlite_autoincrement=True,
)

outbox_site_table = sa.Table(
    "outbox_site",
    metadata,
    # A site whose existing records were queued once when forwarding started (a resync).
    sa.Column("site", sa.Text, primary_key=True),
    sa.Column("seeded_ms", sa.BigInteger, nullable=False),
)

enterprise_record_table = sa.Table(
    "enterprise_record",
    metadata,
    sa.Column("site", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("record_key", sa.Text, nullable=False),
    # The site's outbox id of the newest message applied: an older or equal one changes nothing.
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False),  # tombstones keep their version
    sa.Column("record_json", sa.Text, nullable=True),
    sa.Column("created_ms", sa.BigInteger, nullable=False),  # when the site committed it
    sa.Column("received_ms", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("site", "kind", "record_key", name="enterprise_record_pkey"),
    sa.Index("enterprise_record_version_idx", "site", "version"),
)
