"""Campaigns: send a first message to the leads of an enrichment job (or of a lead filter) at a
set pace inside a send window, each lead in its own outreach conversation; follow their numbers;
pause, resume, cancel or approve them. And the WhatsApp opt-ins a WhatsApp campaign needs.

Every rule is the campaign service's (models/campaign_service.py); the workflow is started and
steered by name (the API does not import workflow code). Bad input starts nothing: 404 for an
unknown job, 422 when nobody of the selection can get the campaign. Pause, resume, cancel and
approve are Updates of the campaign's workflow: 200 with the campaign as it left it, or 409 with
the reason it refused; an `Idempotency-Key` header makes a retry act once."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, Field

from api.deps import CurrentTenant, IdempotencyKey, Session, State, Temporal, settings_of
from api.errors import ApiError
from api.responses import errors
from models import campaign_service
from models.campaign_service import CampaignError
from models.campaigns import CampaignAction, CampaignSpec, CampaignView
from models.repo.playbooks import playbook_for

router = APIRouter(prefix="/api/v1/campaigns", tags=["campaigns"])

CampaignId = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class CampaignList(BaseModel):
    campaigns: list[CampaignView]


class OptInBody(BaseModel):
    lead_id: str = Field(min_length=1, max_length=64)
    source: str = Field(
        min_length=1, max_length=200, description="Where the lead agreed (web form, event, …)."
    )
    recorded_by: str = Field(default="api", max_length=100)


class OptInView(BaseModel):
    lead_id: str
    source: str
    recorded_by: str
    recorded_at: datetime


def _api_error(exc: CampaignError) -> ApiError:
    return ApiError(exc.status, exc.error, exc.detail)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=errors(
        404,
        422,
        503,
        _404="Unknown enrichment job.",
        _422="Bad input, or no lead of the selection can get the campaign (the detail counts "
        "why: no e-mail, no phone, no WhatsApp opt-in, no personalised e-mail).",
    ),
)
async def create_campaign(
    spec: CampaignSpec, tenant: CurrentTenant, state: State, session: Session, client: Temporal
) -> CampaignView:
    """Freeze the recipients and start sending (or hold until approved). `excluded` counts the
    selected leads that were not frozen, by reason."""
    settings = settings_of(state, tenant)
    try:
        return await campaign_service.create_campaign(
            session,
            client,
            tenant_id=tenant.id,
            tenant_settings=settings,
            playbook=playbook_for(settings, tenant_name=tenant.name),
            spec=spec,
        )
    except CampaignError as exc:
        raise _api_error(exc) from exc


@router.get("")
async def list_campaigns(
    tenant: CurrentTenant,
    session: Session,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> CampaignList:
    """The tenant's campaigns, newest first, each with its numbers."""
    views = await campaign_service.list_campaigns(session, tenant_id=tenant.id, limit=limit)
    return CampaignList(campaigns=views)


@router.get("/{campaign_id}", responses=errors(404))
async def get_campaign(
    campaign_id: CampaignId, tenant: CurrentTenant, session: Session
) -> CampaignView:
    """The campaign and its numbers: queued, sent, skipped (by reason), replied, positive
    replies, escalations, meetings booked, opted out, bounced, reply rates."""
    try:
        return await campaign_service.get_campaign(
            session, tenant_id=tenant.id, campaign_id=campaign_id
        )
    except CampaignError as exc:
        raise _api_error(exc) from exc


CONTROL_RESPONSES = errors(
    404, 409, 422, 503, _409="Refused by the campaign: the detail says why; nothing was done."
)


async def _control(
    session: Session,
    client: Temporal,
    tenant_id: str,
    campaign_id: str,
    action: CampaignAction,
    idempotency_key: str | None,
) -> CampaignView:
    try:
        return await campaign_service.control_campaign(
            session,
            client,
            tenant_id=tenant_id,
            campaign_id=campaign_id,
            action=action,
            idempotency_key=idempotency_key,
        )
    except CampaignError as exc:
        raise _api_error(exc) from exc


@router.post("/{campaign_id}/pause", responses=CONTROL_RESPONSES)
async def pause_campaign(
    campaign_id: CampaignId,
    tenant: CurrentTenant,
    session: Session,
    client: Temporal,
    idempotency_key: IdempotencyKey = None,
) -> CampaignView:
    """No new message goes out; one being sent finishes."""
    return await _control(
        session, client, tenant.id, campaign_id, CampaignAction.PAUSE, idempotency_key
    )


@router.post("/{campaign_id}/resume", responses=CONTROL_RESPONSES)
async def resume_campaign(
    campaign_id: CampaignId,
    tenant: CurrentTenant,
    session: Session,
    client: Temporal,
    idempotency_key: IdempotencyKey = None,
) -> CampaignView:
    return await _control(
        session, client, tenant.id, campaign_id, CampaignAction.RESUME, idempotency_key
    )


@router.post("/{campaign_id}/cancel", responses=CONTROL_RESPONSES)
async def cancel_campaign(
    campaign_id: CampaignId,
    tenant: CurrentTenant,
    session: Session,
    client: Temporal,
    idempotency_key: IdempotencyKey = None,
) -> CampaignView:
    """Nothing more is sent; conversations already started go on."""
    return await _control(
        session, client, tenant.id, campaign_id, CampaignAction.CANCEL, idempotency_key
    )


@router.post("/{campaign_id}/approve", responses=CONTROL_RESPONSES)
async def approve_campaign(
    campaign_id: CampaignId,
    tenant: CurrentTenant,
    session: Session,
    client: Temporal,
    idempotency_key: IdempotencyKey = None,
) -> CampaignView:
    """A campaign created with `hold_for_approval` starts sending."""
    return await _control(
        session, client, tenant.id, campaign_id, CampaignAction.APPROVE, idempotency_key
    )


@router.post("/whatsapp-opt-ins", status_code=status.HTTP_201_CREATED, responses=errors(404, 422))
async def record_whatsapp_opt_in(
    body: OptInBody, tenant: CurrentTenant, session: Session
) -> OptInView:
    """Record that the lead agreed to be written to first on WhatsApp: only leads with one get
    a WhatsApp campaign. Recording it again keeps the first record."""
    try:
        row = await campaign_service.record_whatsapp_opt_in(
            session,
            tenant_id=tenant.id,
            lead_id=body.lead_id,
            source=body.source,
            by=body.recorded_by,
        )
    except CampaignError as exc:
        raise _api_error(exc) from exc
    return OptInView(
        lead_id=row.lead_id,
        source=row.source,
        recorded_by=row.recorded_by,
        recorded_at=row.recorded_at,
    )


@router.delete(
    "/whatsapp-opt-ins/{lead_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(404),
)
async def withdraw_whatsapp_opt_in(
    lead_id: Annotated[str, Path(max_length=64)], tenant: CurrentTenant, session: Session
) -> None:
    """The lead withdrew it: running WhatsApp campaigns skip the lead from now on."""
    if not await campaign_service.withdraw_whatsapp_opt_in(
        session, tenant_id=tenant.id, lead_id=lead_id
    ):
        raise ApiError(404, "no opt-in recorded for this lead", lead_id)
