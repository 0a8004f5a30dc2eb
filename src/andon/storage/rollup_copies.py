"""Copies of one asset's rollups under other asset paths: benchmark data for site-wide queries.

Deriving hundreds of machine-years through the MES takes hours; a site-wide query reads only
rollups and does the same work whatever numbers they hold, so ``andon bench query`` derives one
machine and copies its rollups to the others.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from andon.storage.schema import mes_rollup_reason_table, mes_rollup_table

__all__ = ["copy_asset_rollups"]


def copy_asset_rollups(engine: Engine, source: str, targets: Sequence[str]) -> None:
    """Insert ``source``'s hour/shift rollups (and their reason splits) for every target path,
    in one transaction per table."""
    for table in (mes_rollup_table, mes_rollup_reason_table):
        others = [c for c in table.c if c.name != "asset"]
        with engine.begin() as connection:
            for target in targets:
                copy = sa.select(sa.literal(target), *others).where(table.c.asset == source)
                connection.execute(
                    table.insert().from_select(["asset", *(c.name for c in others)], copy)
                )
