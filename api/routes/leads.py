"""Leads: one lead with each CRM's link, last sync and outcome; edit it (an operator's change is
synced to the CRMs like any other); set or lift its do-not-contact explicitly, with who and why
on record (a PATCH may set it, never lift it); trigger a CRM sync by hand."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, EmailStr, Field, StrictBool, field_validator
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from api.conversations_gateway import signal_conversation
from api.deps import CurrentTenant, Session, Temporal
from api.errors import ApiError
from models import lead_service
from models.conversation import SIGNAL_CLOSE, CloseRequest
from models.crm import (
    BUILTIN_INTEGRATION_ID,
    request_crm_sync,
)
from models.lead_service import LIFT_ROUTE
from models.repo import crm as crm_repo
from models.repo import leads as lead_repo
from models.tables import Lead

router = APIRouter(prefix="/api/v1/leads", tags=["leads"])


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
    crm: list[CrmLinkOut]
    recent_syncs: list[SyncRunOut]


class SyncAccepted(BaseModel):
    workflow_id: str


@router.get("/{lead_id}")
async def get_lead(lead_id: str, tenant: CurrentTenant, session: Session) -> LeadOut:
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
        crm=crm,
        recent_syncs=[
            SyncRunOut(
                version=r.version, status=r.status, reason=r.reason, steps=r.steps, at=r.created_at
            )
            for r in runs
        ],
    )


@router.post("/{lead_id}/sync", status_code=status.HTTP_202_ACCEPTED)
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


@router.patch("/{lead_id}")
async def edit_lead(
    lead_id: str, body: LeadEdit, tenant: CurrentTenant, session: Session, temporal: Temporal
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


@router.post("/{lead_id}/do-not-contact")
async def set_do_not_contact(
    lead_id: str,
    body: DoNotContactRequest,
    tenant: CurrentTenant,
    session: Session,
    temporal: Temporal,
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
