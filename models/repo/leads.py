"""Leads: reads for the CRM sync and the API (one lead, a filtered page), changes that arrive
from CRMs, and the insert-once of a lead made from an enrichment row."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ColumnElement, String, cast, or_
from sqlalchemy import update as sa_update
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.common import Channel, Role
from models.crm import INBOUND_FIELDS, LeadSnapshot
from models.lead_attributes import LeadAttributes, lead_attributes
from models.repo.sql import insert, table_of
from models.tables import Conversation, Lead, Message, utcnow
from models.tags import TAG_PATTERN


async def get_lead(session: AsyncSession, *, tenant_id: str, lead_id: str) -> Lead | None:
    """The lead, only if it belongs to the tenant (another tenant's id reads as missing)."""
    lead = await session.get(Lead, lead_id)
    if lead is None or lead.tenant_id != tenant_id:
        return None
    return lead


async def find_lead_by_email(session: AsyncSession, *, tenant_id: str, email: str) -> Lead | None:
    """The tenant's lead with this e-mail (case-insensitive), the most recently updated first."""
    return (
        await session.exec(
            select(Lead)
            .where(Lead.tenant_id == tenant_id, func.lower(Lead.email) == email.strip().lower())
            .order_by(col(Lead.updated_at).desc())
            .limit(1)
        )
    ).first()


async def find_lead_by_phone(session: AsyncSession, *, tenant_id: str, phone: str) -> Lead | None:
    """The tenant's lead with this E.164 phone, the most recently updated first."""
    return (
        await session.exec(
            select(Lead)
            .where(Lead.tenant_id == tenant_id, Lead.phone == phone)
            .order_by(col(Lead.updated_at).desc())
            .limit(1)
        )
    ).first()


async def find_lead_by_company_domain(
    session: AsyncSession, *, tenant_id: str, domain: str
) -> Lead | None:
    """The tenant's lead of the company at this domain, the earliest first (the company's
    first lead is the one a contact-less row enriches, not whichever changed last)."""
    return (
        await session.exec(
            select(Lead)
            .where(Lead.tenant_id == tenant_id, Lead.company_domain == domain)
            .order_by(col(Lead.created_at), col(Lead.id))
            .limit(1)
        )
    ).first()


async def insert_lead_once(
    session: AsyncSession,
    *,
    lead_id: str,
    tenant_id: str,
    channel: str,
    address: str,
    name: str | None,
    email: str | None,
    phone: str | None,
) -> tuple[Lead, bool]:
    """The lead of (tenant, channel, address), inserted if there is none (`ON CONFLICT DO
    NOTHING`), and whether this call inserted it: a retried or concurrent step finds the one row
    instead of failing or adding a second. Committed."""
    leads = table_of(Lead)
    conn = await session.connection()
    now = utcnow()
    inserted = await conn.execute(
        insert(conn, leads)
        .values(
            id=lead_id,
            tenant_id=tenant_id,
            channel=channel,
            address=address,
            name=name,
            email=email,
            phone=phone,
            fields={},
            score=0,
            quality="COLD",
            do_not_contact=False,
            version=1,
            created_at=now,
            updated_at=now,
        )
        # the id derives from (tenant, channel, address): either key conflicts, or neither
        .on_conflict_do_nothing()
        .returning(leads.c.id)
    )
    created = inserted.first() is not None
    await session.commit()
    lead = (
        await session.exec(
            select(Lead).where(
                Lead.tenant_id == tenant_id, Lead.channel == channel, Lead.address == address
            )
        )
    ).one()
    return lead, created


async def create_lead(
    session: AsyncSession,
    *,
    tenant_id: str,
    channel: str,
    address: str,
    name: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    fields: dict[str, Any] | None = None,
    score: int = 0,
    quality: str = "COLD",
    lead_id: str | None = None,
) -> Lead:
    lead = Lead(
        id=lead_id or uuid.uuid4().hex,
        tenant_id=tenant_id,
        channel=channel,
        address=address,
        name=name,
        email=email,
        phone=phone,
        fields=dict(fields or {}),
        score=score,
        quality=quality,
    )
    session.add(lead)
    await session.commit()
    return lead


LEAD_COLUMNS = frozenset(
    {"name", "email", "phone", "score", "quality", "do_not_contact", "source_job_id",
     "company_domain"}
)  # fmt: skip
"""The columns `update_lead` writes (the rest are keys, or leadflow's bookkeeping)."""


async def update_lead(
    session: AsyncSession, *, lead: Lead, changes: dict[str, Any], only_inbound: bool = False
) -> dict[str, Any]:
    """Apply `changes` (column names, or `fields.<key>`); bump the version when anything changed.

    Returns what actually changed. With `only_inbound`, fields a CRM may not set (score,
    quality, ...) are ignored: those are leadflow's own verdict."""
    applied: dict[str, Any] = {}
    new_fields = dict(lead.fields)
    for key, value in changes.items():
        if key.startswith("fields."):
            sub = key.removeprefix("fields.")
            if new_fields.get(sub) != value:
                new_fields[sub] = value
                applied[key] = value
            continue
        if only_inbound and key not in INBOUND_FIELDS:
            continue
        if key not in LEAD_COLUMNS:
            continue
        if getattr(lead, key) != value:
            setattr(lead, key, value)
            applied[key] = value
    if not applied:
        return applied
    # reassign so SQLAlchemy sees the JSON column change
    lead.fields = new_fields
    lead.version += 1
    lead.updated_at = utcnow()
    session.add(lead)
    await session.commit()
    return applied


async def find_do_not_contact_lead(
    session: AsyncSession,
    *,
    tenant_id: str,
    lead_ids: tuple[str, ...] = (),
    channel: str | None = None,
    address: str | None = None,
    phone: str | None = None,
    email: str | None = None,
) -> Lead | None:
    """A do-not-contact lead of the tenant that is any of these: one of `lead_ids`, the lead of
    (`channel`, `address`), or the lead with this phone or e-mail (case-insensitive). One
    statement; the id and (channel, address) are indexed, phone and e-mail filter the
    tenant's rows (an outreach request asks, not a turn)."""
    same: list[ColumnElement[bool]] = []
    if lead_ids:
        same.append(col(Lead.id).in_(lead_ids))
    if channel and address:
        same.append((col(Lead.channel) == channel) & (col(Lead.address) == address))
    if phone:
        same.append(col(Lead.phone) == phone)
    if email:
        same.append(func.lower(Lead.email) == email.strip().lower())
    if not same:
        return None
    return (
        await session.exec(
            select(Lead)
            .where(Lead.tenant_id == tenant_id, col(Lead.do_not_contact).is_(True), or_(*same))
            .order_by(col(Lead.updated_at).desc())
            .limit(1)
        )
    ).first()


async def write_do_not_contact(
    session: AsyncSession, *, tenant_id: str, lead_id: str, do_not_contact: bool
) -> int | None:
    """Set the lead's do-not-contact and bump its version in one `UPDATE … RETURNING`, only if
    it is not set so already: the new version, or None when nothing changed. Atomic, so a turn
    recording the same lead meanwhile loses its version check and re-reads (`record_turn`).
    Not committed: the caller commits with what it writes beside it."""
    leads = table_of(Lead)
    conn = await session.connection()
    row = (
        await conn.execute(
            sa_update(leads)
            .where(
                leads.c.id == lead_id,
                leads.c.tenant_id == tenant_id,
                leads.c.do_not_contact != do_not_contact,
            )
            .values(
                do_not_contact=do_not_contact,
                version=leads.c.version + 1,
                updated_at=utcnow(),
            )
            .returning(leads.c.version)
        )
    ).first()
    return int(row[0]) if row is not None else None


async def conversations_of_lead(
    session: AsyncSession, *, tenant_id: str, lead_id: str
) -> list[Conversation]:
    rows = await session.exec(
        select(Conversation)
        .where(Conversation.tenant_id == tenant_id, Conversation.lead_id == lead_id)
        .order_by(col(Conversation.created_at))
    )
    return list(rows.all())


async def attributes_of(
    session: AsyncSession,
    *,
    lead: Lead,
    conversations: list[Conversation] | None = None,
    total_conversations: int | None = None,
) -> LeadAttributes:
    """The lead's custom attributes (models/lead_attributes.py): its row, how many
    conversations it has and when it last wrote.

    With `conversations` (the caller read them already) one statement over their messages;
    without, the last message is found through the lead's conversations in the statement
    itself, and their count is `total_conversations` when the caller has it (the lead page:
    its conversation list counts them) or one more aggregate: no conversation row is loaded."""
    lead_role = Message.role == Role.LEAD.value
    if conversations is not None:
        total = len(conversations)
        last_lead_message_at = (
            (
                await session.exec(
                    select(func.max(Message.at)).where(
                        col(Message.conversation_id).in_([c.id for c in conversations]),
                        lead_role,
                    )
                )
            ).first()
            if conversations
            else None
        )
    else:
        of_lead = (Conversation.tenant_id == lead.tenant_id, Conversation.lead_id == lead.id)
        last_lead_message_at = (
            await session.exec(
                select(func.max(Message.at))
                .join(Conversation, col(Conversation.id) == col(Message.conversation_id))
                .where(*of_lead, lead_role)
            )
        ).first()
        if total_conversations is None:
            total_conversations = (
                await session.exec(select(func.count()).select_from(Conversation).where(*of_lead))
            ).one()
        total = total_conversations
    return lead_attributes(
        fields=lead.fields,
        tags=lead.tags or (),
        score=lead.score,
        quality=lead.quality,
        channel=lead.channel,
        total_conversations=total,
        last_lead_message_at=last_lead_message_at,
    )


async def lead_snapshot(
    session: AsyncSession, *, tenant_id: str, lead_id: str
) -> LeadSnapshot | None:
    lead = await get_lead(session, tenant_id=tenant_id, lead_id=lead_id)
    if lead is None:
        return None
    conversations = await conversations_of_lead(session, tenant_id=tenant_id, lead_id=lead_id)
    attributes = await attributes_of(session, lead=lead, conversations=conversations)
    chatwoot_threads = tuple(
        c.thread for c in conversations if c.channel == Channel.CHATWOOT.value and c.thread
    )
    raw_interests = lead.fields.get("interests") or lead.fields.get("interest") or ()
    if isinstance(raw_interests, str):
        interests = tuple(
            i.strip() for i in raw_interests.replace(";", ",").split(",") if i.strip()
        )
    else:
        interests = tuple(str(i) for i in raw_interests)
    summary = lead.fields.get("summary")
    return LeadSnapshot(
        tenant_id=lead.tenant_id,
        lead_id=lead.id,
        version=lead.version,
        channel=lead.channel,
        address=lead.address,
        name=lead.name,
        email=lead.email,
        phone=lead.phone,
        score=lead.score,
        quality=lead.quality,
        do_not_contact=lead.do_not_contact,
        fields=dict(lead.fields),
        interests=interests,
        summary=str(summary) if summary else None,
        chatwoot_conversation_ids=chatwoot_threads,
        tags=tuple(lead.tags or ()),
        attributes=attributes,
    )


def _like(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, its own `%`, `_` and `\\` taken literally."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def list_leads(
    session: AsyncSession,
    *,
    tenant_id: str,
    quality: str | None = None,
    source_job_id: str | None = None,
    has_email: bool | None = None,
    has_phone: bool | None = None,
    do_not_contact: bool | None = None,
    search: str | None = None,
    tags: tuple[str, ...] = (),
    stage: str | None = None,
    after_id: str | None = None,
    limit: int = 50,
) -> list[Lead]:
    """One page of the tenant's leads, newest first, ordered by (`created_at`, `id`) descending:
    both never change, so keyset pages continue after `after_id` (the previous page's last
    lead) with no lead repeated or skipped while leads are added or edited meanwhile. A cursor
    whose lead is gone (erased) matches nothing: the caller checks it exists first."""
    query = select(Lead).where(Lead.tenant_id == tenant_id)
    if quality is not None:
        query = query.where(Lead.quality == quality)
    if source_job_id is not None:
        query = query.where(Lead.source_job_id == source_job_id)
    for column, wanted in ((Lead.email, has_email), (Lead.phone, has_phone)):
        if wanted is None:
            continue
        present = col(column).is_not(None) & (col(column) != "")
        query = query.where(present if wanted else ~present)
    if do_not_contact is not None:
        query = query.where(col(Lead.do_not_contact).is_(do_not_contact))
    for tag in tags:
        # Tags are slugs (models/tags.py TAG_PATTERN, checked by the service), so the quoted
        # tag in the JSON text of the list matches that element exactly, on SQLite and
        # PostgreSQL alike; every tag asked for must be there.
        if not TAG_PATTERN.fullmatch(tag):
            raise ValueError(f"not a tag: {tag!r}")
        query = query.where(cast(table_of(Lead).c.tags, String).like(f'%"{tag}"%'))
    if stage is not None:
        # The lead's status is where its conversations stand: a lead with one in that stage.
        in_stage = (
            select(Conversation.id)
            .where(
                Conversation.tenant_id == tenant_id,
                Conversation.lead_id == Lead.id,
                Conversation.stage == stage,
            )
            .exists()
        )
        query = query.where(in_stage)
    if search:
        pattern = _like(search)
        company = table_of(Lead).c.fields["company"].as_string()
        query = query.where(
            or_(
                func.lower(Lead.name).like(pattern, escape="\\"),
                func.lower(Lead.email).like(pattern, escape="\\"),
                func.lower(company).like(pattern, escape="\\"),
            )
        )
    if after_id is not None:
        anchor = select(Lead.created_at).where(Lead.id == after_id).scalar_subquery()
        query = query.where(
            or_(
                col(Lead.created_at) < anchor,
                (col(Lead.created_at) == anchor) & (col(Lead.id) < after_id),
            )
        )
    rows = await session.exec(
        query.order_by(col(Lead.created_at).desc(), col(Lead.id).desc()).limit(limit)
    )
    return list(rows.all())
