"""Leads: one lead with its conversations and each CRM's link, last sync and outcome; edit it
(an operator's change is synced to the CRMs like any other); set or lift its do-not-contact
explicitly, with who and why on record (a PATCH may set it, never lift it); trigger a CRM sync by
hand; export everything held about it; erase it everywhere (models/erasure.py,
workflows/erasure.py)."""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
)
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from api.conversations_gateway import signal_conversation
from api.deps import CurrentTenant, Session, State, Temporal
from api.errors import ApiError
from api.responses import errors
from models import inbox_view, lead_service
from models.common import LeadQuality, Stage
from models.conversation import SIGNAL_CLOSE, CloseRequest
from models.crm import (
    BUILTIN_INTEGRATION_ID,
    request_crm_sync,
)
from models.csv_intake import SafeCsvWriter
from models.erasure import (
    ERASE_ROUTE,
    ERASE_WORKFLOW,
    EraseContactInput,
    ErasureReport,
    erase_workflow_id,
    legacy_erase_workflow_id,
)
from models.export import ContactExport, export_contact
from models.inbox_view import ConversationSummary
from models.lead_attributes import LeadAttributes
from models.lead_export import LEAD_CSV_COLUMNS, lead_csv_row
from models.lead_history import LeadHistory, lead_history
from models.lead_service import (
    CURSOR_PATTERN,
    LIFT_ROUTE,
    MAX_PAGE,
    LeadCursorError,
    LeadFilter,
)
from models.repo import crm as crm_repo
from models.repo import deployment_keys
from models.repo import leads as lead_repo
from models.tables import Lead, utcnow
from models.tags import TAG_PATTERN
from models.task_queues import CONVERSATIONS

MAX_TAG_FILTERS = 10


async def _workflow_id_key(state: State) -> None:
    """CRM sync and erasure ids are keyed (models/workflow_ids.py): an API started while its
    database was down loads the key with its first request here (an attribute check after)."""
    await deployment_keys.ensure_loaded(state.db)


router = APIRouter(prefix="/api/v1/leads", tags=["leads"], dependencies=[Depends(_workflow_id_key)])


class CrmLinkOut(BaseModel):
    integration_id: str
    kind: str
    name: str
    remote_id: str | None
    last_synced_at: datetime | None
    last_version: int | None
    outcome: str | None
    reason: str | None


class SyncRunOut(BaseModel):
    version: int
    status: str
    reason: str | None
    steps: list[dict[str, Any]]
    at: datetime


class LeadOut(BaseModel):
    id: str
    channel: str
    address: str
    name: str | None
    email: str | None
    phone: str | None
    score: int
    quality: str
    do_not_contact: bool
    version: int
    fields: dict[str, Any]
    tags: list[str] = Field(
        description="What the conversation made of the lead (interest, budget band, stage, "
        "vip, test-drive, ...): also its Chatwoot labels and CRM tags."
    )
    attributes: LeadAttributes = Field(
        description="The custom attributes the CRMs get by default (lead score and quality, "
        "budget, urgency, test drive, financing, trade-in, channel, sentiment, last interest, "
        "conversations)."
    )
    crm: list[CrmLinkOut]
    recent_syncs: list[SyncRunOut]
    conversations: list[ConversationSummary] = Field(
        description="The lead's conversations, newest activity first, as "
        "`GET /api/v1/conversations` lists them: the latest "
        f"{inbox_view.LEAD_CONVERSATIONS} (`conversations_total` counts them all)."
    )
    conversations_total: int = Field(description="How many conversations the lead has.")


class SyncAccepted(BaseModel):
    workflow_id: str


class LeadSummary(BaseModel):
    """A lead in a list: what an operator scans, the same values the lead's own page shows."""

    id: str
    channel: str
    address: str
    name: str | None
    company: str | None
    company_domain: str | None
    email: str | None
    phone: str | None
    score: int
    quality: str
    do_not_contact: bool
    source_job_id: str | None
    tags: list[str]
    version: int
    created_at: datetime
    updated_at: datetime


class LeadList(BaseModel):
    leads: list[LeadSummary]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last."
    )
    next: str | None = Field(description="The next page's URL (same filters); null on the last.")


def _summary(lead: Lead) -> LeadSummary:
    company = lead.fields.get("company")
    return LeadSummary(
        id=lead.id,
        channel=lead.channel,
        address=lead.address,
        name=lead.name,
        company=str(company) if company else None,
        company_domain=lead.company_domain,
        email=lead.email,
        phone=lead.phone,
        score=lead.score,
        quality=lead.quality,
        do_not_contact=lead.do_not_contact,
        source_job_id=lead.source_job_id,
        tags=list(lead.tags or ()),
        version=lead.version,
        created_at=lead.created_at,
        updated_at=lead.updated_at,
    )


def lead_filter(
    quality: Annotated[LeadQuality | None, Query()] = None,
    stage: Annotated[
        Stage | None,
        Query(description="Leads with a conversation in this stage (the lead's status)."),
    ] = None,
    source_job: Annotated[
        str | None,
        Query(
            min_length=1, max_length=64, description="Leads created or last enriched by this job."
        ),
    ] = None,
    has_email: Annotated[bool | None, Query()] = None,
    has_phone: Annotated[bool | None, Query()] = None,
    do_not_contact: Annotated[bool | None, Query()] = None,
    q: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=200,
            description="Text in the name, company or e-mail (case-insensitive).",
        ),
    ] = None,
    tag: Annotated[
        list[Annotated[str, StringConstraints(pattern=f"^{TAG_PATTERN.pattern}$")]] | None,
        Query(
            max_length=MAX_TAG_FILTERS,
            description="Leads carrying this tag (repeat for leads carrying all of them), e.g. "
            "`vip`, `test-drive`, `budget-20k-30k`, `interest-volkswagen-golf`: lowercase "
            "letters, digits and hyphens.",
        ),
    ] = None,
) -> LeadFilter:
    """The list's filters, shared by the list and its CSV export."""
    return LeadFilter(
        quality=quality.value if quality else None,
        stage=stage.value if stage else None,
        source_job_id=source_job,
        has_email=has_email,
        has_phone=has_phone,
        do_not_contact=do_not_contact,
        search=q,
        tags=tuple(tag or ()),
    )


LeadFilterQuery = Annotated[LeadFilter, Depends(lead_filter)]


@router.get(
    "",
    responses=errors(
        404,
        422,
        _404="No lead of the tenant at `cursor` (erased since): list from the start.",
        _422="Bad filter, limit or cursor.",
    ),
)
async def list_leads(
    tenant: CurrentTenant,
    session: Session,
    request: Request,
    where: LeadFilterQuery,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[
        str | None,
        Query(pattern=CURSOR_PATTERN, description="`next_cursor` of the previous page."),
    ] = None,
) -> LeadList:
    """The tenant's leads, newest first, filtered; pages follow `next` (or `cursor`): a lead
    added or edited while paging neither repeats nor hides another."""
    try:
        page = await lead_service.list_leads(
            session,
            tenant_id=tenant.id,
            where=where,
            limit=limit,
            cursor=cursor,
        )
    except LeadCursorError as exc:
        raise ApiError(404, "unknown cursor", str(exc)) from exc
    next_url = (
        str(request.url.include_query_params(cursor=page.next_cursor)) if page.next_cursor else None
    )
    return LeadList(
        leads=[_summary(lead) for lead in page.leads], next_cursor=page.next_cursor, next=next_url
    )


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {}}, "description": "The filtered leads as CSV."},
        **errors(422, _422="Bad filter."),
    },
)
async def export_leads(tenant: CurrentTenant, state: State, where: LeadFilterQuery) -> Response:
    """Every lead the same filters as `GET /api/v1/leads` select, newest first, as CSV (UTF-8,
    one header row). Cells a spreadsheet would run as a formula are neutralised, as in the
    enrichment results. Declared before `/{lead_id}`, so `export` is never taken for an id."""
    tenant_id = tenant.id

    async def rows() -> AsyncIterator[str]:
        writer = SafeCsvWriter(LEAD_CSV_COLUMNS)
        yield writer.header()
        # its own session: the response streams after the request's session is closed
        async with state.db.session() as session:
            async for lead in lead_service.iter_leads(session, tenant_id=tenant_id, where=where):
                yield writer.row(lead_csv_row(lead))

    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="leads.csv"'},
    )


@router.get("/{lead_id}/history", responses=errors(404))
async def get_lead_history(lead_id: str, tenant: CurrentTenant, session: Session) -> LeadHistory:
    """What changed about the lead and when, newest first (models/lead_history.py): score
    changes, its conversations and their stage now, handoffs and their release, operators'
    decisions in the transcripts, the audit log's entries about it (who acted), CRM syncs."""
    history = await lead_history(session, tenant_id=tenant.id, lead_id=lead_id)
    if history is None:
        raise ApiError(404, "unknown lead", lead_id)
    return history


@router.get("/{lead_id}", responses=errors(404))
async def get_lead(lead_id: str, tenant: CurrentTenant, session: Session) -> LeadOut:
    """The lead: its row, tags and CRM attributes, each CRM's link with its last sync and
    outcome, the recent syncs, and its conversations (the latest, newest activity first)."""
    lead = await lead_repo.get_lead(session, tenant_id=tenant.id, lead_id=lead_id)
    if lead is None:
        raise ApiError(404, "unknown lead", lead_id)
    return await _lead_out(session, lead)


async def _lead_out(session: AsyncSession, lead: Lead) -> LeadOut:
    lead_id = lead.id
    integrations = {
        i.id: i for i in await crm_repo.list_integrations(session, tenant_id=lead.tenant_id)
    }
    links = await crm_repo.links_of_lead(session, tenant_id=lead.tenant_id, lead_id=lead_id)
    crm: list[CrmLinkOut] = []
    for link in links:
        row = integrations.get(link.integration_id)
        if row is None and link.integration_id != BUILTIN_INTEGRATION_ID:
            continue  # the connection was removed
        crm.append(
            CrmLinkOut(
                integration_id=link.integration_id,
                kind=row.kind if row else "builtin",
                name=row.name if row else "built-in lead table",
                remote_id=link.remote_id,
                last_synced_at=link.last_synced_at,
                last_version=link.last_version,
                outcome=link.outcome,
                reason=link.reason,
            )
        )
    runs = await crm_repo.sync_runs_of_lead(
        session, tenant_id=lead.tenant_id, lead_id=lead_id, limit=5
    )
    conversations, conversations_total = await inbox_view.conversations_of_lead(
        session, tenant_id=lead.tenant_id, lead_id=lead_id
    )
    attributes = await lead_repo.attributes_of(
        session, lead=lead, total_conversations=conversations_total
    )
    return LeadOut(
        id=lead.id,
        channel=lead.channel,
        address=lead.address,
        name=lead.name,
        email=lead.email,
        phone=lead.phone,
        score=lead.score,
        quality=lead.quality,
        do_not_contact=lead.do_not_contact,
        version=lead.version,
        fields=dict(lead.fields),
        tags=list(lead.tags or ()),
        attributes=attributes,
        crm=crm,
        recent_syncs=[
            SyncRunOut(
                version=r.version, status=r.status, reason=r.reason, steps=r.steps, at=r.created_at
            )
            for r in runs
        ],
        conversations=conversations,
        conversations_total=conversations_total,
    )


@router.post("/{lead_id}/sync", status_code=status.HTTP_202_ACCEPTED, responses=errors(404))
async def sync_lead(
    lead_id: str, tenant: CurrentTenant, session: Session, temporal: Temporal
) -> SyncAccepted:
    lead = await lead_repo.get_lead(session, tenant_id=tenant.id, lead_id=lead_id)
    if lead is None:
        raise ApiError(404, "unknown lead", lead_id)
    workflow_id = await request_crm_sync(
        temporal,
        tenant_id=tenant.id,
        lead_id=lead_id,
        reason="manual sync (API)",
        version=lead.version,
    )
    return SyncAccepted(workflow_id=workflow_id)


class LeadEdit(BaseModel):
    """An operator's change; only the keys sent are changed."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    email: EmailStr | None = None
    phone: str | None = Field(default=None, min_length=3, max_length=40)
    do_not_contact: bool | None = None
    fields: dict[str, str | int | float | bool] | None = Field(
        default=None, description="Merged into the lead's extracted fields."
    )


class LeadEdited(BaseModel):
    lead_id: str
    version: int
    changed: list[str]
    sync_workflow_id: str | None
    conversations_closed: int


@router.patch("/{lead_id}", responses=errors(404))
async def edit_lead(
    lead_id: str,
    body: LeadEdit,
    tenant: CurrentTenant,
    session: Session,
    temporal: Temporal,
    request: Request,
) -> LeadEdited:
    lead = await lead_repo.get_lead(session, tenant_id=tenant.id, lead_id=lead_id)
    if lead is None:
        raise ApiError(404, "unknown lead", lead_id)
    if body.do_not_contact is False and lead.do_not_contact:
        # The lead asked not to be contacted: lifting that is a decision someone owns, with a
        # reason on record, not a side effect of an edit.
        raise ApiError(
            422,
            "lifting do-not-contact needs a reason",
            f"use {LIFT_ROUTE.format(lead_id=lead_id)} with "
            '{"do_not_contact": false, "reason": "..."}',
        )
    changes: dict[str, Any] = {
        key: value
        for key, value in body.model_dump(exclude_unset=True, exclude={"fields"}).items()
        if value is not None
    }
    for key, value in (body.fields or {}).items():
        changes[f"fields.{key}"] = value
    if not changes:
        raise ApiError(
            422, "nothing to change", "send at least one of: " + ", ".join(LeadEdit.model_fields)
        )
    applied = await lead_repo.update_lead(session, lead=lead, changes=changes)
    # the lead's history (models/lead_history.py) shows which fields an edit changed
    request.state.audit_detail = {"changed": sorted(applied)}
    conversations = await lead_repo.conversations_of_lead(
        session, tenant_id=tenant.id, lead_id=lead_id
    )
    closed = (
        await _close_conversations(temporal, [c.id for c in conversations])
        if body.do_not_contact is True
        else 0
    )
    sync_id = (
        await request_crm_sync(
            temporal,
            tenant_id=tenant.id,
            lead_id=lead_id,
            reason="operator edit (API)",
            version=lead.version,
        )
        if applied
        else None
    )
    return LeadEdited(
        lead_id=lead_id,
        version=lead.version,
        changed=sorted(applied),
        sync_workflow_id=sync_id,
        conversations_closed=closed,
    )


async def _close_conversations(temporal: Client, conversation_ids: list[str]) -> int:
    """Close the lead's running conversations (do-not-contact): how many were running."""
    closed = 0
    for conversation_id in conversation_ids:
        if await signal_conversation(
            temporal,
            conversation_id,
            SIGNAL_CLOSE,
            CloseRequest(reason="do not contact (operator)"),
        ):
            closed += 1
    return closed


class DoNotContactRequest(BaseModel):
    """An operator's explicit decision: set, or lift, with who and why on record."""

    model_config = ConfigDict(extra="forbid")

    do_not_contact: StrictBool = Field(description="false lifts it; true sets it.")
    reason: str = Field(min_length=1, max_length=500, pattern=r"\S")
    by: str = Field(
        default="operator",
        min_length=1,
        max_length=120,
        pattern=r"\S",
        description="Who decided (kept in the transcript with the reason).",
    )

    @field_validator("reason", "by")
    @classmethod
    def _printable(cls, value: str) -> str:
        if any(unicodedata.category(char) == "Cc" for char in value):
            raise ValueError("must not contain control characters")
        return value.strip()


class DoNotContactChanged(LeadOut):
    changed: bool = Field(description="False when the lead already was so: nothing was written.")
    sync_workflow_id: str | None
    conversations_closed: int


@router.post("/{lead_id}/do-not-contact", responses=errors(404))
async def set_do_not_contact(
    lead_id: str,
    body: DoNotContactRequest,
    tenant: CurrentTenant,
    session: Session,
    temporal: Temporal,
    request: Request,
) -> DoNotContactChanged:
    """Set or lift the lead's do-not-contact. A lift is the only way back for a lead that opted
    out (a PATCH refuses it): recorded in its conversations' transcripts with who and why,
    synced to the CRMs. Setting it also closes the lead's running conversations."""
    change = await lead_service.set_do_not_contact(
        session,
        tenant_id=tenant.id,
        lead_id=lead_id,
        do_not_contact=body.do_not_contact,
        by=body.by,
        reason=body.reason,
    )
    if change is None:
        raise ApiError(404, "unknown lead", lead_id)
    request.state.audit_detail = {
        "do_not_contact": body.do_not_contact,
        "changed": change.changed,
    }
    lead = change.lead
    sync_id: str | None = None
    closed = 0
    if change.changed:
        verb = "set" if body.do_not_contact else "lifted"
        sync_id = await request_crm_sync(
            temporal,
            tenant_id=tenant.id,
            lead_id=lead_id,
            reason=f"do-not-contact {verb} by {body.by}: {body.reason}",
            version=lead.version,
        )
    if body.do_not_contact:
        # Also when it already was set: a conversation still running (a close lost while
        # Temporal was away) is closed now; closing twice is a no-op.
        conversations = await lead_repo.conversations_of_lead(
            session, tenant_id=tenant.id, lead_id=lead_id
        )
        closed = await _close_conversations(temporal, [c.id for c in conversations])
    out = await _lead_out(session, lead)
    return DoNotContactChanged(
        **out.model_dump(),
        changed=change.changed,
        sync_workflow_id=sync_id,
        conversations_closed=closed,
    )


# ---- export and erasure --------------------------------------------------------------------

# How long DELETE waits for the erasure to finish before answering 202 with its status URL. A
# contact's erasure takes well under a second without CRMs; CRMs that are slow or down make it
# minutes, and the workflow finishes it whatever happens to this request.
ERASE_WAIT_SECONDS = 10.0


@router.get("/{lead_id}/export", responses=errors(404, _404="Unknown lead."))
async def export_lead(
    lead_id: str, tenant: CurrentTenant, session: Session, response: Response
) -> ContactExport:
    """Everything leadflow holds about the contact (a data subject's access request): the lead,
    its conversations with every message and their usage counts, scores, escalations, outbox
    entries, enrichment records carrying its e-mail, CRM links and sync runs."""
    document = await export_contact(session, tenant_id=tenant.id, lead_id=lead_id, now=utcnow())
    if document is None:
        raise ApiError(404, "unknown lead", lead_id)
    response.headers["Content-Disposition"] = f'attachment; filename="lead-{lead_id}.json"'
    return document


class ErasureOut(BaseModel):
    lead_id: str
    status: Literal["running", "completed", "failed"]
    status_url: str
    report: ErasureReport | None = Field(default=None, description="Once completed.")
    detail: str | None = Field(default=None, description="Why it failed.")


async def _erasure_out(
    handle: WorkflowHandle[Any, ErasureReport], lead_id: str, *, wait: float
) -> ErasureOut:
    """The erasure's state, waiting up to `wait` seconds for it to finish."""
    url = ERASE_ROUTE.format(lead_id=lead_id)
    try:
        report = await asyncio.wait_for(handle.result(), timeout=wait)
    except TimeoutError:
        return ErasureOut(lead_id=lead_id, status="running", status_url=url)
    except WorkflowFailureError as exc:
        return ErasureOut(
            lead_id=lead_id,
            status="failed",
            status_url=url,
            detail=f"{exc.cause or exc}; erase again to finish it",
        )
    return ErasureOut(lead_id=lead_id, status="completed", status_url=url, report=report)


async def _erasure_handle(
    temporal: Client, workflow_id: str
) -> tuple[WorkflowHandle[Any, ErasureReport], bool] | None:
    """The erasure under this id and whether it runs, or None when Temporal has none."""
    handle = temporal.get_workflow_handle(workflow_id, result_type=ErasureReport)
    try:
        described = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return handle, described.status == WorkflowExecutionStatus.RUNNING


async def _existing_erasure(temporal: Client, tenant_id: str, lead_id: str) -> ErasureOut | None:
    """The last erasure of this lead by this tenant, or None: under its hashed id, else under
    the legacy one (an erasure from before hashed ids; none is started under it any more, so
    the hashed id's is the later). The id names the tenant, so another tenant's erasure of the
    same id is never found."""
    for workflow_id in (
        erase_workflow_id(tenant_id, lead_id),
        legacy_erase_workflow_id(tenant_id, lead_id),
    ):
        found = await _erasure_handle(temporal, workflow_id)
        if found is not None:
            handle, running = found
            return await _erasure_out(handle, lead_id, wait=0.0 if running else 5.0)
    return None


def _answer(out: ErasureOut, response: Response) -> ErasureOut:
    if out.status == "running":
        response.status_code = status.HTTP_202_ACCEPTED
        response.headers["Location"] = out.status_url
    return out


@router.delete(
    "/{lead_id}",
    responses={
        202: {"model": ErasureOut, "description": "Erasure under way: poll `status_url`."},
        **errors(404, _404="Unknown lead (and no erasure of it)."),
    },
    openapi_extra={"x-audit-action": "lead.erase"},
)
async def erase_lead(
    lead_id: str,
    tenant: CurrentTenant,
    session: Session,
    temporal: Temporal,
    request: Request,
    response: Response,
    crm: bool = Query(
        default=False,
        description="Also delete the contact in every connected CRM (HubSpot archives it, "
        "restorable there for 90 days).",
    ),
) -> ErasureOut:
    """Erase the contact everywhere: its conversation and CRM sync workflows (terminated, their
    histories deleted), every row about it, the personal parts of its usage rows (counts stay),
    and with `crm=true` its CRM records. Runs as a workflow with a deterministic id: 200 with
    the report when it finishes within a few seconds, else 202 and `status_url`. Repeating it
    is safe: a running erasure is joined; an erased lead answers its last erasure's report.

    Erasure is not suppression: nothing of the contact is kept, so nothing blocks a new
    conversation they start later (set do-not-contact instead to keep them from being written
    to)."""
    # The audit log's entry (api/audit_middleware.py) says what was asked; ids only.
    request.state.audit_detail = {"crm": crm}
    lead = await lead_repo.get_lead(session, tenant_id=tenant.id, lead_id=lead_id)
    if lead is None:
        existing = await _existing_erasure(temporal, tenant.id, lead_id)
        if existing is None:
            raise ApiError(404, "unknown lead", lead_id)
        request.state.audit_detail = {"crm": crm, "status": existing.status, "repeat": True}
        return _answer(existing, response)
    # The request's session must not hold the rows the erasure deletes (SQLite locks).
    await session.close()
    # An erasure started before hashed ids, still running, is joined as one under the hashed
    # id would be (USE_EXISTING): two erasures of one lead at once would race on its rows.
    legacy = await _erasure_handle(temporal, legacy_erase_workflow_id(tenant.id, lead_id))
    if legacy is not None and legacy[1]:
        out = await _erasure_out(legacy[0], lead_id, wait=ERASE_WAIT_SECONDS)
        request.state.audit_detail = {"crm": crm, "status": out.status, "repeat": True}
        return _answer(out, response)
    handle = await temporal.start_workflow(
        ERASE_WORKFLOW,
        EraseContactInput(tenant_id=tenant.id, lead_id=lead_id, crm=crm),
        id=erase_workflow_id(tenant.id, lead_id),
        task_queue=CONVERSATIONS,
        result_type=ErasureReport,
        # a lead erased before and written again since (same contact) is erased again
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    out = await _erasure_out(handle, lead_id, wait=ERASE_WAIT_SECONDS)
    request.state.audit_detail = {"crm": crm, "status": out.status}
    return _answer(out, response)


@router.get(
    "/{lead_id}/erasure",
    responses=errors(404, _404="No erasure of this lead."),
)
async def erasure_status(
    lead_id: str, tenant: CurrentTenant, temporal: Temporal, response: Response
) -> ErasureOut:
    """The state of the lead's last erasure (`status_url` of DELETE)."""
    existing = await _existing_erasure(temporal, tenant.id, lead_id)
    if existing is None:
        raise ApiError(404, "no erasure of this lead", lead_id)
    return _answer(existing, response)
