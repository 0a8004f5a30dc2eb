"""Reads of the current period of many assets at once, for the UNS mirror.

The mirror republishes every asset's shift so far every few seconds: with a thousand assets that
is hundreds of documents a second, and reading each one's rollups and counts in queries of its
own cost more than everything else the server did. These read one group of assets per query
(``IN`` over the asset paths); each statement is built once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from andon.domain import AssetPath, CountCorrection, ProducedCount, TimeAccount
from andon.domain.counts import CountRecord
from andon.storage.schema import (
    MES_ACCOUNT_COLUMNS,
    mes_count_correction_table,
    mes_count_table,
    mes_rollup_reason_table,
    mes_rollup_table,
)

__all__ = ["PeriodReads", "RollupSum"]

#: The sum of some rollup buckets of one asset, and the latest end among them (None: no bucket).
RollupSum = tuple[TimeAccount, int | None]

#: Assets per query: one bound value each, far below SQLite's and PostgreSQL's limits.
_ASSETS_PER_QUERY = 500


def _rollup_sums() -> Any:
    t = mes_rollup_table
    return (
        sa.select(
            t.c.asset,
            sa.func.max(t.c.end_ms),
            *(sa.func.sum(t.c[name]) for name in MES_ACCOUNT_COLUMNS),
        )
        .where(
            t.c.asset.in_(sa.bindparam("assets", expanding=True)),
            t.c.kind == sa.bindparam("kind"),
            t.c.start_ms >= sa.bindparam("start_ms"),
            t.c.start_ms < sa.bindparam("end_ms"),
        )
        .group_by(t.c.asset)
    )


def _reason_sums() -> Any:
    t = mes_rollup_reason_table
    return (
        sa.select(t.c.asset, t.c.reason_id, sa.func.sum(t.c.loss_ms))
        .where(
            t.c.asset.in_(sa.bindparam("assets", expanding=True)),
            t.c.kind == sa.bindparam("kind"),
            t.c.start_ms >= sa.bindparam("start_ms"),
            t.c.start_ms < sa.bindparam("end_ms"),
        )
        .group_by(t.c.asset, t.c.reason_id)
    )


def _counts() -> Any:
    """The derived counts and the corrections in force, in one statement (a correction is
    never a start-up reject)."""
    c, k = mes_count_table, mes_count_correction_table
    derived = sa.select(c.c.asset, c.c.ts_ms, c.c.total, c.c.reject, c.c.startup).where(
        c.c.asset.in_(sa.bindparam("assets", expanding=True)),
        c.c.ts_ms >= sa.bindparam("start_ms"),
        c.c.ts_ms < sa.bindparam("end_ms"),
    )
    corrections = sa.select(
        k.c.asset, k.c.ts_ms, k.c.total, k.c.reject, sa.null().label("startup")
    ).where(
        k.c.asset.in_(sa.bindparam("assets", expanding=True)),
        k.c.ts_ms >= sa.bindparam("start_ms"),
        k.c.ts_ms < sa.bindparam("end_ms"),
    )
    return sa.union_all(derived, corrections)


class PeriodReads:
    """Grouped reads on one engine (shared with ``MesRepository``)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._rollups = _rollup_sums()
        self._reasons = _reason_sums()
        self._count_rows = _counts()

    def rollup_sums(
        self, assets: Sequence[AssetPath], kind: str, start_ms: int, end_ms: int
    ) -> dict[AssetPath, RollupSum]:
        """Per asset, the sum of its ``kind`` buckets starting in [start_ms, end_ms), with the
        loss by reason; an asset without such a bucket is left out."""
        by_name = {str(a): a for a in assets}
        values: dict[str, tuple[int | None, list[int]]] = {}
        reasons: dict[str, list[tuple[str, int]]] = {}
        params: dict[str, Any] = {"kind": kind, "start_ms": start_ms, "end_ms": end_ms}
        with self._engine.connect() as connection:
            for names in _chunks(list(by_name)):
                params["assets"] = names
                for name, end, *sums in connection.execute(self._rollups, params):
                    values[name] = (None if end is None else int(end), [int(v or 0) for v in sums])
                for name, reason_id, loss in connection.execute(self._reasons, params):
                    if loss:
                        reasons.setdefault(name, []).append((reason_id, int(loss)))
        found: dict[AssetPath, RollupSum] = {}
        for name, (end, sums) in values.items():
            account = TimeAccount(
                **dict(zip(MES_ACCOUNT_COLUMNS, sums, strict=True)),
                loss_by_reason=tuple(sorted(reasons.get(name, ()))),
            )
            found[by_name[name]] = (account, end)
        return found

    def counts(
        self, assets: Sequence[AssetPath], start_ms: int, end_ms: int
    ) -> dict[AssetPath, list[CountRecord]]:
        """Per asset, its counts and the corrections in force in [start_ms, end_ms)."""
        by_name = {str(a): a for a in assets}
        found: dict[AssetPath, list[CountRecord]] = {}
        params: dict[str, Any] = {"start_ms": start_ms, "end_ms": end_ms}
        with self._engine.connect() as connection:
            for names in _chunks(list(by_name)):
                params["assets"] = names
                for name, ts, total, reject, startup in connection.execute(
                    self._count_rows, params
                ):
                    asset = by_name[name]
                    record: CountRecord = (
                        CountCorrection(asset, int(ts), int(total), int(reject))
                        if startup is None
                        else ProducedCount(asset, int(ts), int(total), int(reject), bool(startup))
                    )
                    found.setdefault(asset, []).append(record)
        return found


def _chunks(names: list[str]) -> list[list[str]]:
    return [names[i : i + _ASSETS_PER_QUERY] for i in range(0, len(names), _ASSETS_PER_QUERY)]
