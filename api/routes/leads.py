"""Leads: one lead with each CRM's link, last sync and outcome; trigger a CRM sync by hand."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel

from api.deps import CurrentTenant, Session, Temporal
from api.errors import ApiError
from models.crm import (
    BUILTIN_INTEGRATION_ID,
    CRM_SYNC_WORKFLOW,
    SYNC_SIGNAL,
    CrmSyncInput,
    SyncRequest,
    crm_sync_workflow_id,
)
from models.repo import crm as crm_repo
from models.repo import leads as lead_repo
from models.task_queues import CRM

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
    integrations = {i.id: i for i in await crm_repo.list_integrations(session, tenant_id=tenant.id)}
    links = await crm_repo.links_of_lead(session, tenant_id=tenant.id, lead_id=lead_id)
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
    runs = await crm_repo.sync_runs_of_lead(session, tenant_id=tenant.id, lead_id=lead_id, limit=5)
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
    workflow_id = crm_sync_workflow_id(tenant.id, lead_id)
    # by name: the API does not import workflow code; one workflow per lead coalesces requests
    await temporal.start_workflow(
        CRM_SYNC_WORKFLOW,
        CrmSyncInput(tenant_id=tenant.id, lead_id=lead_id),
        id=workflow_id,
        task_queue=CRM,
        start_signal=SYNC_SIGNAL,
        start_signal_args=[SyncRequest(reason="manual sync (API)", version=lead.version)],
    )
    return SyncAccepted(workflow_id=workflow_id)
