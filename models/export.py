"""Everything leadflow holds about one contact, as one JSON document (a data subject's access
request): the same rows erasure removes (`models.erasure.contact_scope`), read instead."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlmodel import SQLModel, col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.crm_tables import CrmLink, CrmSyncRun
from models.erasure import contact_scope, enrichment_records_of
from models.repo import usage as usage_repo
from models.tables import Conversation, Escalation, LeadScoreRecord, Message, OutboxMessage
from models.usage import UsageTotals

EXPORT_FORMAT = 1


def _row(row: SQLModel, *, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    return {k: v for k, v in row.model_dump(mode="json").items() if k not in drop}


class ConversationExport(BaseModel):
    conversation: dict[str, Any]
    messages: list[dict[str, Any]]
    usage: UsageTotals = Field(description="Model calls of this conversation: counts only.")


class ContactExport(BaseModel):
    format: int = EXPORT_FORMAT
    exported_at: datetime
    tenant_id: str
    lead: dict[str, Any]
    conversations: list[ConversationExport]
    scores: list[dict[str, Any]]
    escalations: list[dict[str, Any]]
    outbox: list[dict[str, Any]]
    enrichment: list[dict[str, Any]] = Field(
        description="Enrichment records whose CSV row or findings carry the lead's e-mail."
    )
    crm_links: list[dict[str, Any]]
    crm_syncs: list[dict[str, Any]]


async def export_contact(
    session: AsyncSession, *, tenant_id: str, lead_id: str, now: datetime
) -> ContactExport | None:
    """The document, or None for an unknown (or another tenant's) lead."""
    scope = await contact_scope(session, tenant_id=tenant_id, lead_id=lead_id)
    if scope is None:
        return None
    conv = scope.conversation_ids
    conversations: list[ConversationExport] = []
    for conversation_id in conv:
        row = await session.get(Conversation, conversation_id)
        if row is None:
            continue
        messages = await session.exec(
            select(Message)
            .where(Message.conversation_id == conversation_id)
            .order_by(col(Message.at), col(Message.id))
        )
        conversations.append(
            ConversationExport(
                conversation=_row(row),
                messages=[_row(m, drop=("dedupe_key",)) for m in messages.all()],
                usage=await usage_repo.conversation_usage(session, conversation_id=conversation_id),
            )
        )
    scores = await session.exec(
        select(LeadScoreRecord)
        .where(
            LeadScoreRecord.tenant_id == tenant_id,
            or_(
                col(LeadScoreRecord.lead_id) == lead_id,
                col(LeadScoreRecord.conversation_id).in_(conv),
            ),
        )
        .order_by(col(LeadScoreRecord.at))
    )
    escalations = await session.exec(
        select(Escalation)
        .where(Escalation.tenant_id == tenant_id, col(Escalation.conversation_id).in_(conv))
        .order_by(col(Escalation.created_at))
    )
    outbox = await session.exec(
        select(OutboxMessage)
        .where(
            OutboxMessage.tenant_id == tenant_id,
            or_(
                col(OutboxMessage.conversation_id).in_(conv),
                col(OutboxMessage.to).in_(scope.addresses),
            ),
        )
        .order_by(col(OutboxMessage.created_at))
    )
    links = await session.exec(
        select(CrmLink).where(CrmLink.tenant_id == tenant_id, CrmLink.lead_id == lead_id)
    )
    runs = await session.exec(
        select(CrmSyncRun)
        .where(CrmSyncRun.tenant_id == tenant_id, CrmSyncRun.lead_id == lead_id)
        .order_by(col(CrmSyncRun.created_at))
    )
    records = await enrichment_records_of(session, tenant_id=tenant_id, email=scope.email)
    return ContactExport(
        exported_at=now,
        tenant_id=tenant_id,
        lead=_row(scope.lead),
        conversations=conversations,
        scores=[_row(s) for s in scores.all()],
        escalations=[_row(e) for e in escalations.all()],
        outbox=[_row(o) for o in outbox.all()],
        enrichment=[_row(r) for r in records],
        crm_links=[_row(link) for link in links.all()],
        crm_syncs=[_row(run, drop=("run_key",)) for run in runs.all()],
    )
