"""Campaigns, their frozen recipients and WhatsApp opt-ins: every statement the campaign
service runs (models/campaign_service.py holds the rules)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.campaign_tables import Campaign, CampaignRecipient, WhatsAppOptIn
from models.campaigns import RecipientFacts, RecipientStatus
from models.enrichment_tables import EnrichmentRecord
from models.tables import Conversation, Escalation, Lead, utcnow


async def insert_campaign(
    session: AsyncSession, *, campaign: Campaign, recipients: Sequence[CampaignRecipient]
) -> None:
    """The campaign and its recipients in one transaction (committed)."""
    session.add(campaign)
    await session.flush()  # the campaign row first: recipients reference it
    session.add_all(list(recipients))
    await session.commit()


async def delete_campaign(session: AsyncSession, *, tenant_id: str, campaign_id: str) -> None:
    """Undo a creation whose workflow could not start (nothing was sent)."""
    campaign = await get_campaign(session, tenant_id=tenant_id, campaign_id=campaign_id)
    if campaign is None:
        return
    rows = await session.exec(
        select(CampaignRecipient).where(CampaignRecipient.campaign_id == campaign_id)
    )
    for row in rows.all():
        await session.delete(row)
    await session.flush()
    await session.delete(campaign)
    await session.commit()


async def get_campaign(
    session: AsyncSession, *, tenant_id: str, campaign_id: str
) -> Campaign | None:
    row = await session.get(Campaign, campaign_id)
    return row if row is not None and row.tenant_id == tenant_id else None


async def list_campaigns(session: AsyncSession, *, tenant_id: str, limit: int) -> list[Campaign]:
    rows = await session.exec(
        select(Campaign)
        .where(Campaign.tenant_id == tenant_id)
        .order_by(col(Campaign.created_at).desc(), col(Campaign.id).desc())
        .limit(limit)
    )
    return list(rows.all())


async def set_status(
    session: AsyncSession, *, tenant_id: str, campaign_id: str, status: str, finished: bool
) -> None:
    campaign = await get_campaign(session, tenant_id=tenant_id, campaign_id=campaign_id)
    if campaign is None:
        return
    now = utcnow()
    campaign.status = status
    campaign.updated_at = now
    if status == "running" and campaign.hold_for_approval and campaign.approved_at is None:
        campaign.approved_at = now
    if finished and campaign.finished_at is None:
        campaign.finished_at = now
    session.add(campaign)
    await session.commit()


async def get_recipient(
    session: AsyncSession, *, campaign_id: str, position: int
) -> CampaignRecipient | None:
    rows = await session.exec(
        select(CampaignRecipient).where(
            CampaignRecipient.campaign_id == campaign_id, CampaignRecipient.position == position
        )
    )
    return rows.first()


async def mark_recipient(
    session: AsyncSession,
    *,
    recipient: CampaignRecipient,
    status: RecipientStatus,
    reason: str | None = None,
    conversation_id: str | None = None,
    sent_at: datetime | None = None,
) -> None:
    recipient.status = status.value
    recipient.skip_reason = reason
    if conversation_id is not None:
        recipient.conversation_id = conversation_id
    if sent_at is not None:
        recipient.sent_at = sent_at
    recipient.updated_at = utcnow()
    session.add(recipient)
    await session.commit()


async def recipient_facts(session: AsyncSession, *, campaign_id: str) -> list[RecipientFacts]:
    """Every recipient with its conversation (stage, turns, escalations) and lead (opt-out,
    bounce, quality): one statement, what `models.campaigns.campaign_numbers` counts."""
    escalations = (
        select(func.count())
        .where(Escalation.conversation_id == CampaignRecipient.conversation_id)
        .correlate(CampaignRecipient)
        .scalar_subquery()
    )
    query = (
        sa_select(
            col(CampaignRecipient.status),
            col(CampaignRecipient.skip_reason),
            col(CampaignRecipient.sent_at),
            col(Conversation.turns),
            col(Conversation.stage),
            escalations,
            col(Lead.do_not_contact),
            col(Lead.email_bounced_at),
            col(Lead.quality),
        )
        .select_from(CampaignRecipient)
        .join(
            Conversation,
            col(Conversation.id) == col(CampaignRecipient.conversation_id),
            isouter=True,
        )
        .join(Lead, col(Lead.id) == col(CampaignRecipient.lead_id), isouter=True)
        .where(col(CampaignRecipient.campaign_id) == campaign_id)
    )
    rows = await session.execute(query)
    return [RecipientFacts(*row) for row in rows.all()]


async def done_records_of_job(
    session: AsyncSession, *, tenant_id: str, job_id: str
) -> list[EnrichmentRecord]:
    """The job's rows that were enriched and carry a personalised e-mail."""
    rows = await session.exec(
        select(EnrichmentRecord)
        .where(
            EnrichmentRecord.tenant_id == tenant_id,
            EnrichmentRecord.job_id == job_id,
            EnrichmentRecord.status == "done",
            col(EnrichmentRecord.email_body).is_not(None),
        )
        .order_by(col(EnrichmentRecord.row_number))
    )
    return list(rows.all())


async def get_record(
    session: AsyncSession, *, tenant_id: str, record_id: int
) -> EnrichmentRecord | None:
    row = await session.get(EnrichmentRecord, record_id)
    return row if row is not None and row.tenant_id == tenant_id else None


async def opted_in_lead_ids(
    session: AsyncSession, *, tenant_id: str, lead_ids: Sequence[str]
) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(lead_ids), 500):  # bounded IN lists
        chunk = list(lead_ids[start : start + 500])
        rows = await session.exec(
            select(WhatsAppOptIn.lead_id).where(
                WhatsAppOptIn.tenant_id == tenant_id, col(WhatsAppOptIn.lead_id).in_(chunk)
            )
        )
        found.update(rows.all())
    return found


async def record_opt_in(
    session: AsyncSession, *, tenant_id: str, lead_id: str, source: str, recorded_by: str
) -> WhatsAppOptIn:
    """Record (or keep) the lead's WhatsApp opt-in; the first recording stays (committed)."""
    rows = await session.exec(
        select(WhatsAppOptIn).where(
            WhatsAppOptIn.tenant_id == tenant_id, WhatsAppOptIn.lead_id == lead_id
        )
    )
    existing = rows.first()
    if existing is not None:
        return existing
    row = WhatsAppOptIn(
        tenant_id=tenant_id, lead_id=lead_id, source=source, recorded_by=recorded_by
    )
    session.add(row)
    await session.commit()
    await session.refresh(row)
    return row


async def withdraw_opt_in(session: AsyncSession, *, tenant_id: str, lead_id: str) -> bool:
    rows = await session.exec(
        select(WhatsAppOptIn).where(
            WhatsAppOptIn.tenant_id == tenant_id, WhatsAppOptIn.lead_id == lead_id
        )
    )
    existing = rows.first()
    if existing is None:
        return False
    await session.delete(existing)
    await session.commit()
    return True
