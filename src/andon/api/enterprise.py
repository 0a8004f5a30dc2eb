"""The enterprise's copy of the sites' MES records (operator and up): ``GET /api/v1/enterprise/
sites`` (each site with its record counts and the last version and time received) and ``GET
/api/v1/enterprise/records`` (a site's records changed after a version, tombstones included, in
version order: page by passing the last version back). 503 unless ``[enterprise] enabled``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel

from andon.api._time import iso_ms
from andon.api.context import ApiContext
from andon.storage.enterprise import MAX_RECORDS, EnterpriseRepository

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/enterprise", tags=["enterprise"])


class SiteOut(BaseModel):
    site: str
    records: int
    deleted: int
    by_kind: dict[str, int]
    last_version: int
    last_created: str
    last_created_ms: int
    last_received: str
    last_received_ms: int


class SitesOut(BaseModel):
    sites: list[SiteOut]


class RecordOut(BaseModel):
    key: str
    kind: str
    record_key: str
    version: int
    deleted: bool
    record: dict[str, Any] | None
    created_ms: int
    received_ms: int


class RecordsOut(BaseModel):
    site: str
    kind: str | None
    since_version: int
    records: list[RecordOut]
    #: The version to pass as since_version for the next page (the last one here).
    next_since_version: int


def _repository(request: Request) -> EnterpriseRepository:
    ctx: ApiContext = request.app.state.context
    if ctx.enterprise is None:
        raise HTTPException(503, "this server keeps no enterprise records ([enterprise] enabled)")
    return ctx.enterprise


@router.get("/sites", response_model=SitesOut, summary="Sites with record counts, last version")
def sites(request: Request) -> SitesOut:
    return SitesOut(
        sites=[
            SiteOut(
                site=s.site,
                records=s.records,
                deleted=s.deleted,
                by_kind=s.by_kind,
                last_version=s.last_version,
                last_created=iso_ms(s.last_created_ms),
                last_created_ms=s.last_created_ms,
                last_received=iso_ms(s.last_received_ms),
                last_received_ms=s.last_received_ms,
            )
            for s in _repository(request).sites()
        ]
    )


@router.get(
    "/records",
    response_model=RecordsOut,
    summary="A site's records after a version, in version order (tombstones included)",
)
def records(
    request: Request,
    site: Annotated[str, Query(min_length=1, max_length=200, description="Site name")],
    kind: Annotated[
        str | None, Query(max_length=100, description="Record kind, e.g. run; all if omitted")
    ] = None,
    since_version: Annotated[int, Query(ge=0, description="Only versions above this")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_RECORDS, description="Most records")] = 1000,
) -> RecordsOut:
    found = _repository(request).records(site, kind or None, since_version, limit)
    return RecordsOut(
        site=site,
        kind=kind or None,
        since_version=since_version,
        records=[
            RecordOut(
                key=f"{r.kind}:{r.record_key}",
                kind=r.kind,
                record_key=r.record_key,
                version=r.version,
                deleted=r.deleted,
                record=r.record,
                created_ms=r.created_ms,
                received_ms=r.received_ms,
            )
            for r in found
        ],
        next_since_version=found[-1].version if found else since_version,
    )
