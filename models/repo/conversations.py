"""Conversations, their messages, leads, scores and escalations, as the workflow records them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.conversation import RecordTurnInput
from models.tables import Conversation, Escalation, Lead, LeadScoreRecord, Message, utcnow


async def _upsert_lead(session: AsyncSession, record: RecordTurnInput) -> Lead:
    lead = await session.get(Lead, record.lead_id)
    if lead is None:
        lead = Lead(
            id=record.lead_id,
            tenant_id=record.tenant_id,
            channel=record.channel.value,
            address=record.contact,
        )
    changed = False
    if record.contact_name and lead.name != record.contact_name:
        lead.name, changed = record.contact_name, True
    merged = {**lead.fields, **record.fields}
    if merged != lead.fields:
        lead.fields, changed = merged, True
        email, phone = merged.get("email"), merged.get("phone")
        lead.email = str(email) if email else lead.email
        lead.phone = str(phone) if phone else lead.phone
    if record.score is not None and (
        lead.score != record.score.total or lead.quality != record.score.quality.value
    ):
        lead.score, lead.quality, changed = record.score.total, record.score.quality.value, True
    if changed:
        lead.version += 1
        lead.updated_at = utcnow()
    session.add(lead)
    return lead


async def record_turn(session: AsyncSession, *, record: RecordTurnInput) -> bool:
    """Write a turn in one transaction. Idempotent: replaying the same turn key changes nothing.

    Returns whether the lead changed (so a CRM sync is worth requesting)."""
    lead_version_before = None
    existing = await session.get(Lead, record.lead_id)
    if existing is not None:
        lead_version_before = existing.version
    lead = await _upsert_lead(session, record)
    await session.flush()

    conv = await session.get(Conversation, record.conversation_id)
    if conv is None:
        conv = Conversation(
            id=record.conversation_id,
            tenant_id=record.tenant_id,
            channel=record.channel.value,
            contact=record.contact,
        )
    conv.lead_id = lead.id
    conv.stage = record.stage.value
    conv.thread = record.thread or conv.thread
    conv.turns = max(conv.turns, record.turns)
    if record.score is not None:
        conv.score, conv.quality = record.score.total, record.score.quality.value
    if record.entries:
        conv.last_message_at = max(e.at for e in record.entries)
    conv.updated_at = utcnow()
    session.add(conv)
    await session.flush()

    for index, entry in enumerate(record.entries):
        key = entry.provider_message_id or f"{record.turn_key}:{index}"
        exists = (
            await session.exec(
                select(Message.id).where(
                    Message.conversation_id == record.conversation_id, Message.dedupe_key == key
                )
            )
        ).first()
        if exists is not None:
            continue
        session.add(
            Message(
                conversation_id=record.conversation_id,
                tenant_id=record.tenant_id,
                role=entry.role.value,
                text=entry.text,
                at=entry.at,
                provider_message_id=entry.provider_message_id,
                dedupe_key=key,
                knowledge_ids=list(entry.knowledge_ids),
            )
        )
    score_exists = (
        record.score is not None
        and (
            await session.exec(
                select(LeadScoreRecord.id).where(
                    LeadScoreRecord.conversation_id == record.conversation_id,
                    LeadScoreRecord.dedupe_key == record.turn_key,
                )
            )
        ).first()
        is not None
    )
    if record.score is not None and not score_exists:
        session.add(
            LeadScoreRecord(
                tenant_id=record.tenant_id,
                lead_id=lead.id,
                conversation_id=record.conversation_id,
                dedupe_key=record.turn_key,
                total=record.score.total,
                quality=record.score.quality.value,
                components=[c.model_dump() for c in record.score.components],
            )
        )
    if record.escalation is not None:
        esc_exists = (
            await session.exec(
                select(Escalation.id).where(
                    Escalation.conversation_id == record.conversation_id,
                    Escalation.dedupe_key == record.turn_key,
                )
            )
        ).first()
        if esc_exists is None:
            session.add(
                Escalation(
                    tenant_id=record.tenant_id,
                    conversation_id=record.conversation_id,
                    dedupe_key=record.turn_key,
                    rule=record.escalation.rule,
                    reason=record.escalation.reason,
                    notified=list(record.escalation.notified),
                )
            )
    try:
        await session.commit()
    except IntegrityError:
        # A concurrent retry of the same turn won the race; its rows are ours.
        await session.rollback()
        return False
    return lead_version_before is None or lead.version != lead_version_before


async def resolve_escalations(session: AsyncSession, *, conversation_id: str) -> None:
    rows = (
        await session.exec(
            select(Escalation).where(
                Escalation.conversation_id == conversation_id, col(Escalation.resolved_at).is_(None)
            )
        )
    ).all()
    for row in rows:
        row.resolved_at = utcnow()
        session.add(row)
    await session.commit()


async def list_conversations(
    session: AsyncSession,
    *,
    tenant_id: str,
    stage: str | None = None,
    quality: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[Sequence[Conversation], int]:
    query = select(Conversation).where(Conversation.tenant_id == tenant_id)
    if stage:
        query = query.where(Conversation.stage == stage)
    if quality:
        query = query.where(Conversation.quality == quality)
    total = (await session.exec(select(func.count()).select_from(query.subquery()))).one()
    rows = (
        await session.exec(
            query.order_by(col(Conversation.updated_at).desc()).limit(limit).offset(offset)
        )
    ).all()
    return rows, int(total)


async def get_conversation(
    session: AsyncSession, *, tenant_id: str, conversation_id: str
) -> Conversation | None:
    conv = await session.get(Conversation, conversation_id)
    if conv is None or conv.tenant_id != tenant_id:
        return None
    return conv


async def transcript(session: AsyncSession, *, conversation_id: str) -> Sequence[Message]:
    return (
        await session.exec(
            select(Message)
            .where(Message.conversation_id == conversation_id)
            .order_by(col(Message.id))
        )
    ).all()


async def latest_score(session: AsyncSession, *, conversation_id: str) -> LeadScoreRecord | None:
    return (
        await session.exec(
            select(LeadScoreRecord)
            .where(LeadScoreRecord.conversation_id == conversation_id)
            .order_by(col(LeadScoreRecord.id).desc())
            .limit(1)
        )
    ).first()


async def escalations(session: AsyncSession, *, conversation_id: str) -> Sequence[Escalation]:
    return (
        await session.exec(
            select(Escalation)
            .where(Escalation.conversation_id == conversation_id)
            .order_by(col(Escalation.id))
        )
    ).all()


async def recent_messages(
    session: AsyncSession, *, conversation_id: str, limit: int = 30
) -> list[Message]:
    """The conversation's last `limit` messages, oldest first (the model's context)."""
    rows = await session.exec(
        select(Message)
        .where(Message.conversation_id == conversation_id)
        .order_by(col(Message.id).desc())
        .limit(limit)
    )
    return list(reversed(rows.all()))


async def lead_fields(session: AsyncSession, *, conversation_id: str) -> dict[str, Any]:
    """What is known about the conversation's lead, as of its last recorded turn."""
    row = (
        await session.exec(
            select(Lead.fields)
            .join(Conversation, col(Conversation.lead_id) == col(Lead.id))
            .where(Conversation.id == conversation_id)
        )
    ).first()
    return dict(row) if row else {}
