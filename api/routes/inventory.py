"""A tenant's inventory: what the agent would find (`GET`), the list posted through the API
(`PUT` replaces it, `POST/DELETE .../items` change single items), and the sources fetched on a
Temporal Schedule (`.../sources`).

Writes go through the knowledge service: the database first, then the search backend. When the
database took a write and the backend did not, the answer is 202 with what changed and
`"search_index": "pending"`: the rows are kept and pushed on the next write or ingestion.
A source is a row and a schedule together: created both or neither (503 naming Temporal), and
deleted with its items, which stop being offered."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import httpcore
from fastapi import APIRouter, Query, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from api.deps import CurrentTenant, Knowledge, Session, State, Temporal
from api.errors import ApiError
from api.responses import errors
from models.inventory import (
    MAX_ITEMS_PER_LIST,
    Fuel,
    IngestDiff,
    InventoryItem,
    InventoryQuery,
    ItemHit,
    NewInventoryItem,
    Transmission,
)
from models.knowledge.ingestion import API_SOURCE_ID
from models.knowledge.schedules import (
    RunAlreadyGoing,
    ScheduleView,
    delete_source_schedule,
    describe_source_schedule,
    end_source_runs,
    ensure_source_schedule,
    run_source_now,
)
from models.knowledge.service import IndexPending, KnowledgeService
from models.knowledge_sources import (
    MAX_EVERY_MINUTES,
    MIN_EVERY_MINUTES,
    ListingSelectors,
    SourceKind,
    SourceSpec,
)
from models.knowledge_tables import KnowledgeSourceRow
from models.netguard import UrlGuard, UrlRefused
from models.repo import inventory as inventory_repo
from models.repo import knowledge_sources as source_repo
from models.settings import Settings

router = APIRouter(prefix="/api/v1/inventory", tags=["inventory"])

MAX_SEARCH_RESULTS = 50


# ---- shapes ------------------------------------------------------------------------------------


class SearchAnswer(BaseModel):
    backend: str = Field(description="The search backend that answered: database or weaviate.")
    items: list[ItemHit]


class PostedItem(NewInventoryItem):
    """An item as the API takes it: numbers and flags as JSON types (`"available": 0` is no
    boolean), as the schema says. Feeds go through the parser, which reads their loose forms."""

    year: StrictInt | None = Field(default=None, ge=1900, le=2100)
    mileage: StrictInt | None = Field(default=None, ge=0, le=5_000_000)
    available: StrictBool = True


class ItemList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[PostedItem] = Field(max_length=MAX_ITEMS_PER_LIST)


class NewSource(SourceSpec):
    """A source as the API takes it (JSON types strictly, as for items)."""

    every_minutes: StrictInt | None = Field(
        default=None, ge=MIN_EVERY_MINUTES, le=MAX_EVERY_MINUTES
    )
    paused: StrictBool = False


class Applied(IngestDiff):
    """What a write changed, and whether the search backend has it yet."""

    search_index: Literal["ok", "pending"] = "ok"
    search_index_reason: str | None = Field(
        default=None, description="Why the backend does not have it yet (pending only)."
    )


class SourcePatch(BaseModel):
    """The fields to change; `note` says why, when `paused` changes (shown in Temporal)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    kind: SourceKind | None = None
    url: str | None = None
    every_minutes: StrictInt | None = Field(
        default=None, ge=MIN_EVERY_MINUTES, le=MAX_EVERY_MINUTES
    )
    paused: StrictBool | None = None
    mapping: dict[str, str] | None = None
    items_path: str | None = None
    selectors: ListingSelectors | None = None
    currency: str | None = None
    delimiter: str | None = None
    note: str | None = Field(default=None, max_length=500)


class SourceView(BaseModel):
    id: str
    name: str
    spec: SourceSpec
    every_minutes: int = Field(
        description="Effective interval (the deployment's default if unset)."
    )
    items: int = Field(description="Live items of this source.")
    created_at: datetime
    updated_at: datetime
    last_run_at: datetime | None
    last_result: dict[str, Any] | None
    last_error: str | None
    schedule: ScheduleView | None = Field(
        default=None, description="The Temporal Schedule (single-source answers only)."
    )
    schedule_error: str | None = Field(
        default=None, description="Why the schedule could not be read (Temporal unavailable)."
    )


class RunStarted(BaseModel):
    workflow_id: str
    source_id: str


# ---- helpers -----------------------------------------------------------------------------------


def _applied(diff: IngestDiff, pending: IndexPending | None = None) -> JSONResponse:
    body = Applied(
        **diff.model_dump(),
        search_index="pending" if pending else "ok",
        search_index_reason=pending.reason if pending else None,
    )
    return JSONResponse(
        status_code=status.HTTP_202_ACCEPTED if pending else status.HTTP_200_OK,
        content=body.model_dump(mode="json"),
    )


def _keyed(items: Sequence[NewInventoryItem]) -> list[InventoryItem]:
    """Items with their keys; what only the stored form refuses (a URL that is not http(s))
    is a 422 naming the item, before anything is written."""
    keyed: list[InventoryItem] = []
    problems: list[dict[str, Any]] = []
    for n, item in enumerate(items):
        try:
            keyed.append(item.keyed())
        except ValidationError as exc:
            problems.extend(
                {"loc": ["body", "items", n, *e["loc"]], "msg": e["msg"], "type": e["type"]}
                for e in exc.errors()
            )
    if problems:
        raise ApiError(422, "invalid request", problems)
    return keyed


async def _apply(
    knowledge: KnowledgeService,
    *,
    tenant_id: str,
    items: list[InventoryItem],
    source_id: str,
    replace: bool,
) -> JSONResponse:
    try:
        diff = await knowledge.apply_items(
            tenant_id=tenant_id, items=items, source_id=source_id, replace=replace
        )
    except IndexPending as pending:
        return _applied(pending.diff, pending)
    return _applied(diff)


async def _check_url(settings: Settings, url: str) -> None:
    """Refused here with the guard's reason (the worker's client refuses the same addresses when
    it connects; this is the early answer). Nothing is fetched."""
    try:
        await UrlGuard(settings.ssrf_allowlist).check(url)
    except UrlRefused as exc:
        raise ApiError(422, "source url refused", exc.reason) from exc
    except httpcore.ConnectError:
        pass  # a name that does not resolve now: the run reports it, and retries


def _every(spec: SourceSpec, settings: Settings) -> int:
    return spec.every_minutes or settings.inventory_every_minutes


async def _source(session: AsyncSession, tenant_id: str, source_id: str) -> KnowledgeSourceRow:
    row = await source_repo.get_source(session, tenant_id=tenant_id, source_id=source_id)
    if row is None:
        raise ApiError(404, "inventory source not found", source_id)
    return row


async def _view(
    session: AsyncSession,
    settings: Settings,
    row: KnowledgeSourceRow,
    *,
    schedule: ScheduleView | None = None,
    schedule_error: str | None = None,
) -> SourceView:
    spec = source_repo.spec_of(row)
    live = await inventory_repo.counts(session, tenant_id=row.tenant_id)
    return SourceView(
        id=row.id,
        name=row.name,
        spec=spec,
        every_minutes=_every(spec, settings),
        items=live.get(row.id, 0),
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_run_at=row.last_run_at,
        last_result=row.last_result,
        last_error=row.last_error,
        schedule=schedule,
        schedule_error=schedule_error,
    )


def _temporal_failed(action: str, exc: Exception) -> ApiError:
    return ApiError(503, "Temporal is unavailable", f"could not {action}: {exc}")


# ---- items -------------------------------------------------------------------------------------


@router.get("", responses=errors(503, _503="The configured search backend is unreachable."))
async def search_inventory(
    tenant: CurrentTenant,
    knowledge: Knowledge,
    make: Annotated[str | None, Query(max_length=80)] = None,
    model: Annotated[str | None, Query(max_length=120)] = None,
    fuel: Fuel | None = None,
    transmission: Transmission | None = None,
    min_price: Annotated[Decimal | None, Query(ge=0, max_digits=12, decimal_places=2)] = None,
    max_price: Annotated[Decimal | None, Query(ge=0, max_digits=12, decimal_places=2)] = None,
    min_year: Annotated[int | None, Query(ge=1900, le=2100)] = None,
    max_mileage: Annotated[int | None, Query(ge=0, le=5_000_000)] = None,
    q: Annotated[str, Query(max_length=500)] = "",
    limit: Annotated[int, Query(ge=1, le=MAX_SEARCH_RESULTS)] = 10,
    include_unavailable: bool = False,
) -> SearchAnswer:
    """What the agent would find: the backend's ranking, each item checked against the filters."""
    try:
        query = InventoryQuery(
            make=make or None,
            model=model or None,
            fuel=fuel,
            transmission=transmission,
            min_price=min_price,
            max_price=max_price,
            min_year=min_year,
            max_mileage=max_mileage,
            text=q,
            available_only=not include_unavailable,
            limit=limit,
        )
    except ValidationError as exc:
        raise ApiError(
            422,
            "invalid request",
            [
                {"loc": ["query", *e["loc"]], "msg": e["msg"], "type": e["type"]}
                for e in exc.errors()
            ],
        ) from exc
    hits = await knowledge.search_items(tenant_id=tenant.id, query=query)
    return SearchAnswer(backend=knowledge.backend, items=hits)


_WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": Applied, "description": "Applied: what changed."},
    202: {
        "model": Applied,
        "description": "Stored; the search backend does not have it yet (`search_index` "
        "pending, with the reason): it is pushed on the next write or ingestion.",
    },
    **errors(503, _503="The configured search backend is unreachable."),
}


@router.put("", response_model=Applied, responses=_WRITE_RESPONSES)
async def replace_inventory(
    body: ItemList, tenant: CurrentTenant, knowledge: Knowledge
) -> JSONResponse:
    """Replace the items posted through the API (source `api`); the sources' items stay."""
    return await _apply(
        knowledge,
        tenant_id=tenant.id,
        items=_keyed(body.items),
        source_id=API_SOURCE_ID,
        replace=True,
    )


@router.post("/items", response_model=Applied, responses=_WRITE_RESPONSES)
async def upsert_items(
    body: PostedItem | ItemList, tenant: CurrentTenant, knowledge: Knowledge
) -> JSONResponse:
    """Add or update one item, or `{"items": [...]}`; nothing is removed."""
    items = body.items if isinstance(body, ItemList) else [body]
    return await _apply(
        knowledge, tenant_id=tenant.id, items=_keyed(items), source_id=API_SOURCE_ID, replace=False
    )


@router.delete(
    "/items",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        202: {"model": Applied, "description": "Removed; the search backend catches up later."},
        **errors(404, 503, _404="No live item with this key."),
    },
)
async def delete_item(
    tenant: CurrentTenant,
    knowledge: Knowledge,
    key: Annotated[str, Query(min_length=1, max_length=200, description="The item's key.")],
) -> Response:
    """Remove one item (it stops being offered). The key is a query parameter: keys are often
    listing URLs."""
    try:
        removed = await knowledge.remove_item(tenant_id=tenant.id, key=key)
    except IndexPending as pending:
        return _applied(pending.diff, pending)
    if not removed:
        raise ApiError(404, "inventory item not found", key)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# ---- sources -----------------------------------------------------------------------------------


@router.post(
    "/sources",
    status_code=status.HTTP_201_CREATED,
    responses=errors(503, _503="Temporal is unavailable: the source was not created."),
)
async def create_source(
    body: NewSource, tenant: CurrentTenant, session: Session, state: State, temporal: Temporal
) -> SourceView:
    """A listing page or feed, fetched every `every_minutes` (default: the deployment's)."""
    spec = SourceSpec.model_validate(body.model_dump())
    await _check_url(state.settings, spec.url)
    row = await source_repo.create_source(session, tenant_id=tenant.id, spec=spec)
    try:
        await ensure_source_schedule(
            temporal,
            tenant_id=tenant.id,
            source_id=row.id,
            name=spec.name,
            every_minutes=_every(spec, state.settings),
            paused=spec.paused,
        )
    except Exception as exc:
        # A source without a schedule would never be fetched: none is kept.
        await source_repo.delete_source(session, tenant_id=tenant.id, source_id=row.id)
        raise _temporal_failed("create the source's schedule", exc) from exc
    schedule = await describe_source_schedule(temporal, tenant_id=tenant.id, source_id=row.id)
    return await _view(session, state.settings, row, schedule=schedule)


@router.get("/sources")
async def list_sources(
    tenant: CurrentTenant, session: Session, state: State
) -> dict[str, list[SourceView]]:
    rows = await source_repo.list_sources(session, tenant_id=tenant.id)
    return {"sources": [await _view(session, state.settings, row) for row in rows]}


@router.get("/sources/{source_id}", responses=errors(404))
async def get_source(
    source_id: str, tenant: CurrentTenant, session: Session, state: State
) -> SourceView:
    """The source, its last run (result or error), and its schedule (paused, next runs)."""
    row = await _source(session, tenant.id, source_id)
    try:
        client = await state.temporal_client()
        schedule = await describe_source_schedule(client, tenant_id=tenant.id, source_id=row.id)
    except Exception as exc:
        # The row is still worth showing (its last error says most) while Temporal is down.
        return await _view(session, state.settings, row, schedule_error=str(exc))
    return await _view(session, state.settings, row, schedule=schedule)


@router.patch("/sources/{source_id}", responses=errors(404, 503))
async def update_source(
    source_id: str,
    patch: SourcePatch,
    tenant: CurrentTenant,
    session: Session,
    state: State,
    temporal: Temporal,
) -> SourceView:
    """Change the source; the schedule follows (interval, paused). Runs read the source's row,
    so a new URL or mapping applies from the next run."""
    row = await _source(session, tenant.id, source_id)
    changes = patch.model_dump(exclude_unset=True, exclude={"note"})
    merged = {**source_repo.spec_of(row).model_dump(mode="json"), **changes}
    try:
        spec = SourceSpec.model_validate(merged)
    except ValidationError as exc:
        raise ApiError(
            422,
            "invalid request",
            [
                {"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]}
                for e in exc.errors()
            ],
        ) from exc
    if "url" in changes:
        await _check_url(state.settings, spec.url)
    try:
        # The schedule first: if Temporal refuses, the row still says what the schedule does.
        await ensure_source_schedule(
            temporal,
            tenant_id=tenant.id,
            source_id=row.id,
            name=spec.name,
            every_minutes=_every(spec, state.settings),
            paused=spec.paused,
            note=patch.note,
        )
    except Exception as exc:
        raise _temporal_failed("update the source's schedule", exc) from exc
    row = await source_repo.update_spec(session, row=row, spec=spec)
    schedule = await describe_source_schedule(temporal, tenant_id=tenant.id, source_id=row.id)
    return await _view(session, state.settings, row, schedule=schedule)


@router.delete(
    "/sources/{source_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        202: {"model": Applied, "description": "Deleted; the search backend catches up later."},
        **errors(404, 503),
    },
)
async def delete_source(
    source_id: str,
    tenant: CurrentTenant,
    session: Session,
    knowledge: Knowledge,
    temporal: Temporal,
) -> Response:
    """Delete the schedule and end the source's runs, delete the source, remove its items
    (they stop being offered)."""
    row = await _source(session, tenant.id, source_id)
    try:
        await delete_source_schedule(temporal, tenant_id=tenant.id, source_id=row.id)
        await end_source_runs(temporal, tenant_id=tenant.id, source_id=row.id)
    except Exception as exc:
        raise _temporal_failed("delete the source's schedule", exc) from exc
    # The row before the items: a run that applies items after this removal finds its source
    # gone and removes them itself (activities/ingestion.py), so none outlives the source.
    await source_repo.delete_source(session, tenant_id=tenant.id, source_id=row.id)
    pending: IndexPending | None = None
    try:
        await knowledge.apply_items(tenant_id=tenant.id, items=[], source_id=row.id, replace=True)
    except IndexPending as exc:
        pending = exc
    if pending is not None:
        return _applied(pending.diff, pending)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/sources/{source_id}/run",
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(404, 409, 503, _409="A run of this source is going."),
)
async def run_source(
    source_id: str, tenant: CurrentTenant, session: Session, temporal: Temporal
) -> RunStarted:
    """Fetch the source now (also when its schedule is paused)."""
    row = await _source(session, tenant.id, source_id)
    try:
        handle = await run_source_now(
            temporal, tenant_id=tenant.id, source_id=row.id, name=row.name
        )
    except RunAlreadyGoing as exc:
        raise ApiError(409, "a run of this source is going", exc.workflow_id) from exc
    except Exception as exc:
        raise _temporal_failed("start the run", exc) from exc
    return RunStarted(workflow_id=handle.id, source_id=row.id)
