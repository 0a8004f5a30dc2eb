"""Manual MES edits in the database: count edits with their corrections, and states added by hand.

The writes take the caller's connection: they run as hooks inside the historian writer's derived
transaction (with the rollup increments they cause and the audit entry), so an edit, its effect on
the rollups and its audit entry commit together, fenced like every derived write. Reads open
their own connection.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from andon.domain import (
    AssetPath,
    CountCorrection,
    CountEdit,
    CountEditMode,
    CountTriple,
    StateOverride,
)
from andon.storage.audit import Transaction
from andon.storage.outbox import records_changed
from andon.storage.schema import (
    mes_count_correction_table,
    mes_count_edit_table,
    mes_state_override_table,
)

__all__ = ["AddedState", "MesEditRepository"]

_FAR = 2**62


@dataclass(frozen=True, slots=True)
class AddedState:
    """A stored state added by hand, its reason when added (None: the state's default), who
    added it and when."""

    override: StateOverride
    reason_id: str | None
    username: str
    created_ms: int


def _edit(row: Any) -> CountEdit:
    return CountEdit(
        id=int(row["id"]),
        asset=AssetPath.parse(row["asset"]),
        start_ms=int(row["start_ms"]),
        end_ms=int(row["end_ms"]),
        mode=CountEditMode(row["mode"]),
        requested=(row["infeed"], row["outfeed"], row["waste"]),
        change=CountTriple(
            int(row["infeed_delta"]), int(row["outfeed_delta"]), int(row["waste_delta"])
        ),
        username=row["username"],
        comment=row["comment"],
        created_ms=int(row["created_ms"]),
        reverted_ms=None if row["reverted_ms"] is None else int(row["reverted_ms"]),
        reverted_by=row["reverted_by"],
    )


class MesEditRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @property
    def engine(self) -> Engine:
        return self._engine

    # -- count edits: writes (inside the caller's transaction) ----------------------------------
    def insert_edit(
        self, connection: Transaction, edit: CountEdit, corrections: Sequence[CountCorrection]
    ) -> CountEdit:
        """Store ``edit`` (its id is ignored) and its corrections; returns it with its id."""
        t = mes_count_edit_table
        infeed, outfeed, waste = edit.requested
        values = {
            "asset": str(edit.asset), "start_ms": edit.start_ms, "end_ms": edit.end_ms,
            "mode": edit.mode.value, "infeed": infeed, "outfeed": outfeed, "waste": waste,
            "infeed_delta": edit.change.infeed, "outfeed_delta": edit.change.outfeed,
            "waste_delta": edit.change.waste, "username": edit.username,
            "comment": edit.comment, "created_ms": edit.created_ms,
            "reverted_ms": None, "reverted_by": None,
        }  # fmt: skip
        inserted = connection.execute(t.insert().values(**values).returning(t.c.id))
        edit_id = int(inserted.scalar_one())
        if corrections:
            connection.execute(
                mes_count_correction_table.insert(),
                [
                    {"edit_id": edit_id, "asset": str(c.asset), "ts_ms": c.ts_ms,
                     "total": c.total, "reject": c.reject}
                    for c in corrections
                ],
            )  # fmt: skip
        records_changed(connection, "count_edit", [(edit_id,)])
        return _edit({**values, "id": edit_id})

    def mark_reverted(
        self, connection: Transaction, edit_id: int, username: str, at_ms: int
    ) -> CountEdit:
        """The edit no longer applies: its corrections go, the edit stays (reverted)."""
        t = mes_count_edit_table
        connection.execute(
            t.update()
            .where(t.c.id == edit_id, t.c.reverted_ms.is_(None))
            .values(reverted_ms=at_ms, reverted_by=username)
        )
        connection.execute(
            mes_count_correction_table.delete().where(
                mes_count_correction_table.c.edit_id == edit_id
            )
        )
        row = connection.execute(sa.select(t).where(t.c.id == edit_id)).mappings().one()
        records_changed(connection, "count_edit", [(edit_id,)])
        return _edit(row)

    # -- count edits: reads --------------------------------------------------------------------
    def get_edit(self, edit_id: int) -> CountEdit | None:
        t = mes_count_edit_table
        with self._engine.connect() as connection:
            row = connection.execute(sa.select(t).where(t.c.id == edit_id)).mappings().first()
        return None if row is None else _edit(row)

    def edits(
        self,
        assets: Iterable[AssetPath],
        start_ms: int = -_FAR,
        end_ms: int = _FAR,
        *,
        in_force: bool = False,
    ) -> list[CountEdit]:
        """Edits of ``assets`` whose period overlaps [start_ms, end_ms), newest first."""
        t = mes_count_edit_table
        query = (
            sa.select(t)
            .where(
                t.c.asset.in_([str(a) for a in assets]),
                t.c.start_ms < end_ms,
                t.c.end_ms > start_ms,
            )
            .order_by(t.c.id.desc())
        )
        if in_force:
            query = query.where(t.c.reverted_ms.is_(None))
        with self._engine.connect() as connection:
            return [_edit(r) for r in connection.execute(query).mappings()]

    def corrections(
        self, asset: AssetPath, start_ms: int, end_ms: int, *, edit_id: int | None = None
    ) -> list[CountCorrection]:
        """The corrections in force seen in [start_ms, end_ms), by time (of one edit if given)."""
        t = mes_count_correction_table
        query = (
            sa.select(t)
            .where(t.c.asset == str(asset), t.c.ts_ms >= start_ms, t.c.ts_ms < end_ms)
            .order_by(t.c.ts_ms, t.c.edit_id)
        )
        if edit_id is not None:
            query = query.where(t.c.edit_id == edit_id)
        with self._engine.connect() as connection:
            return [
                CountCorrection(asset, int(r["ts_ms"]), int(r["total"]), int(r["reject"]),
                                int(r["edit_id"]))
                for r in connection.execute(query).mappings()
            ]  # fmt: skip

    # -- states added by hand ------------------------------------------------------------------
    def insert_added_state(
        self,
        connection: Transaction,
        asset: AssetPath,
        added: StateOverride,
        reason_id: str | None,
        username: str,
        at_ms: int,
    ) -> None:
        connection.execute(
            mes_state_override_table.insert().values(
                asset=str(asset), start_ms=added.start_ms, end_ms=added.end_ms, code=added.code,
                reason_id=reason_id, username=username, created_ms=at_ms,
            )
        )  # fmt: skip
        records_changed(connection, "added_state", [(str(asset), added.start_ms)])

    def delete_added_state(self, connection: Transaction, asset: AssetPath, start_ms: int) -> None:
        t = mes_state_override_table
        connection.execute(t.delete().where(t.c.asset == str(asset), t.c.start_ms == start_ms))
        records_changed(connection, "added_state", [(str(asset), start_ms)])  # a tombstone

    def added_states(self, asset: AssetPath, start_ms: int, end_ms: int) -> list[AddedState]:
        """States added by hand on ``asset`` overlapping [start_ms, end_ms), by start."""
        t = mes_state_override_table
        query = (
            sa.select(t)
            .where(t.c.asset == str(asset), t.c.start_ms < end_ms, t.c.end_ms > start_ms)
            .order_by(t.c.start_ms)
        )
        with self._engine.connect() as connection:
            return [
                AddedState(
                    StateOverride(int(r["start_ms"]), int(r["end_ms"]), int(r["code"])),
                    r["reason_id"],
                    r["username"],
                    int(r["created_ms"]),
                )
                for r in connection.execute(query).mappings()
            ]
