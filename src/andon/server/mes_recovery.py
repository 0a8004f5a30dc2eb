"""Rebuilding the MES service's memory at server start, from what the database already holds.

The builders are seeded, without writing anything, with the stored intervals of the last
``horizon_ms`` and with the counter values of the hour before the last stored count. Then the
history written after those points is derived again through ``MesService.offer``: samples whose
derived records were committed give no change (the builders are idempotent), and samples whose
derived records were lost (the process died between the sample commit and the MES commit, which
follow each other in the writer's queue) give exactly the missing changes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from andon.domain import AssetPath
from andon.server._mes_window import paged_history as _history
from andon.server.mes_service import DEFAULT_HORIZON_MS, MesService
from andon.storage.store import HistorianStore
from andon.storage.types import Sample

__all__ = ["DEFAULT_SEED_HORIZON_MS", "recover"]

log = logging.getLogger(__name__)

DEFAULT_SEED_HORIZON_MS = DEFAULT_HORIZON_MS
_COUNTER_SEED_MS = 3_600_000
_PAGE = 10_000
_FAR = 2**62


def recover(
    service: MesService,
    store: HistorianStore,
    now_ms: int,
    horizon_ms: int | None = None,
    assets: Iterable[AssetPath] | None = None,
) -> int:
    """Seed the builders and derive what the history holds beyond them; returns the number of
    samples replayed. ``horizon_ms`` defaults to the service's. ``assets``: only these (a
    cluster node taking over one domain of control), with freshly emptied builders."""
    horizon_ms = service.horizon_ms if horizon_ms is None else horizon_ms
    only = None if assets is None else set(assets)
    by_asset: dict[object, dict[str, str]] = {}
    for tag, binding in service.plant.bindings.items():
        by_asset.setdefault(binding.asset, {})[binding.role] = tag
    replayed = 0
    for asset in service.plant.bound_assets:
        if only is not None and asset not in only:
            continue
        tags = by_asset.get(asset, {})
        stored = service.repository.intervals_since(asset, now_ms - horizon_ms)
        since = stored[0].start_ms if stored else now_ms - horizon_ms
        added = service.edit_repository.added_states(asset, since, _FAR)
        service.seed(asset, stored, [a.override for a in added])
        state_from = stored[-1].start_ms if stored else -_FAR
        last_count = service.repository.last_count_ts(asset)
        counter_from = -_FAR
        if last_count is not None:
            counter_from = last_count + 1
            for role in ("infeed", "outfeed", "waste"):
                counter_tag = tags.get(role)
                if counter_tag is not None:
                    since = last_count - _COUNTER_SEED_MS
                    seed = list(_history(store, counter_tag, since, last_count + 1))
                    service.seed_counter(asset, role, seed)
        for role, tag in tags.items():
            start = counter_from if role in ("infeed", "outfeed", "waste") else state_from
            batch: list[Sample] = []
            for sample in _history(store, tag, start, _FAR):
                batch.append(sample)
                if len(batch) >= _PAGE:
                    service.offer(batch)
                    replayed += len(batch)
                    batch = []
            service.offer(batch)
            replayed += len(batch)
    if replayed:
        log.info("MES derived %d samples from the history at start", replayed)
    return replayed
