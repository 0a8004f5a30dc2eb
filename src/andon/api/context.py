"""What the API needs from the running server, as one explicit object."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from andon.server.auth import UserService
from andon.server.edge_registry import EdgeRegistry
from andon.server.live_events import LiveEvents
from andon.server.live_tags import LiveTagTable
from andon.server.mes_queries import MesQueries
from andon.server.plant_editor import PlantEditor
from andon.server.tag_writes import TagWriteFunction
from andon.storage.enterprise import EnterpriseRepository
from andon.storage.types import HistoryBucket, Sample, TagInfo

__all__ = ["ApiContext", "HistoryReader"]


class HistoryReader(Protocol):
    def history(
        self, tag: str, start_ms: int, end_ms: int, limit: int = 10_000
    ) -> list[Sample]: ...

    def aggregate(
        self, tag: str, start_ms: int, end_ms: int, bucket_ms: int
    ) -> list[HistoryBucket]: ...

    def tags(self) -> list[TagInfo]: ...


@dataclass(slots=True)
class ApiContext:
    live_tags: LiveTagTable
    history: HistoryReader
    edges: EdgeRegistry
    #: Health of each component: name -> {"ok": bool, ...details}.
    health: Callable[[], dict[str, dict[str, Any]]]
    #: Renders the Prometheus exposition text.
    metrics_text: Callable[[], bytes]
    #: Users, logins and tokens; every /api/v1 endpoint but health and login needs one.
    users: UserService
    site_name: str = "Plant"
    #: Device ids in display order, grouped by line, for the machines page.
    lines: Sequence[tuple[str, Sequence[str]]] = field(default_factory=tuple)
    #: Off by default: Prometheus scrapers usually carry no token.
    metrics_require_login: bool = False
    #: MES reads (assets, states, OEE, Pareto, runs); None when no plant file is loaded.
    mes: MesQueries | None = None
    #: Pushes tag and asset state changes to web clients (GET /api/v1/live); None: no stream.
    live: LiveEvents | None = None
    #: Cluster nodes, domains, leases and epochs for the system page; None: a single node.
    cluster_status: Callable[[], dict[str, Any]] | None = None
    #: Writes to equipment (POST /api/v1/tags/write): ``MesServer.write_tag``; None: 503.
    write_tag: TagWriteFunction | None = None
    #: Why a write naming (asset path, tag path) -- either may be None -- cannot be made on this
    #: node now (a passive cluster node: 409 with this text, ``andon.api.write_guard``); None
    #: here (a single node): every write may be made.
    write_refusal: Callable[[str | None, str | None], str | None] | None = None
    #: The sites' records on an enterprise server (GET /api/v1/enterprise/...); None: 503.
    enterprise: EnterpriseRepository | None = None
    #: The plant file's editor (GET/PUT /api/v1/admin/plant, the admin page); None: no plant
    #: file is configured (503).
    plant_editor: PlantEditor | None = None
