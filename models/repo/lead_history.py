"""The rows a lead's history is read from (models/lead_history.py): its score records, its
conversations' escalations and system notes, its CRM sync runs, and the audit log's entries
about it or its conversations. Reads only, newest first, each capped."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit_tables import AuditEvent
from models.common import Role
from models.crm_tables import CrmSyncRun
from models.tables import Escalation, LeadScoreRecord, Message


async def score_records(
    session: AsyncSession, *, tenant_id: str, lead_id: str, limit: int
) -> list[LeadScoreRecord]:
    rows = await session.exec(
        select(LeadScoreRecord)
        .where(LeadScoreRecord.tenant_id == tenant_id, LeadScoreRecord.lead_id == lead_id)
        .order_by(col(LeadScoreRecord.at).desc(), col(LeadScoreRecord.id).desc())
        .limit(limit)
    )
    return list(rows.all())


async def escalations(
    session: AsyncSession, *, tenant_id: str, conversation_ids: Sequence[str], limit: int
) -> list[Escalation]:
    if not conversation_ids:
        return []
    rows = await session.exec(
        select(Escalation)
        .where(
            Escalation.tenant_id == tenant_id,
            col(Escalation.conversation_id).in_(conversation_ids),
        )
        .order_by(col(Escalation.created_at).desc())
        .limit(limit)
    )
    return list(rows.all())


async def system_notes(
    session: AsyncSession, *, tenant_id: str, conversation_ids: Sequence[str], limit: int
) -> list[Message]:
    """The system entries of the conversations' transcripts: operators' decisions (do-not-
    contact set or lifted, with who and why), sends that failed, handoffs and closes."""
    if not conversation_ids:
        return []
    rows = await session.exec(
        select(Message)
        .where(
            Message.tenant_id == tenant_id,
            col(Message.conversation_id).in_(conversation_ids),
            Message.role == Role.SYSTEM.value,
        )
        .order_by(col(Message.at).desc(), col(Message.id).desc())
        .limit(limit)
    )
    return list(rows.all())


async def sync_runs(
    session: AsyncSession, *, tenant_id: str, lead_id: str, limit: int
) -> list[CrmSyncRun]:
    rows = await session.exec(
        select(CrmSyncRun)
        .where(CrmSyncRun.tenant_id == tenant_id, CrmSyncRun.lead_id == lead_id)
        .order_by(col(CrmSyncRun.id).desc())
        .limit(limit)
    )
    return list(rows.all())


async def audit_entries(
    session: AsyncSession, *, tenant_id: str, resource_ids: Sequence[str], limit: int
) -> list[AuditEvent]:
    """The audit log's entries about these resources (the lead and its conversations), newest
    first. The audit log's own reads (models/audit.py) page a tenant's whole log; this is the
    one read by resource."""
    if not resource_ids:
        return []
    rows = await session.exec(
        select(AuditEvent)
        .where(
            AuditEvent.tenant_id == tenant_id,
            col(AuditEvent.resource_id).in_(resource_ids),
        )
        .order_by(col(AuditEvent.id).desc())
        .limit(limit)
    )
    return list(rows.all())
