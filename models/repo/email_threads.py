"""SQL of mail in: the Message-IDs leadflow sent (models/email_tables.py), looked up to thread a
reply; and the hard-bounce mark on the tenant's leads (Lead.email_bounced_at/email_bounce)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.email_tables import EmailThread
from models.repo.sql import insert, table_of
from models.tables import Lead

_THREADS = table_of(EmailThread)
_LEADS = table_of(Lead)


async def record_sent(
    session: AsyncSession,
    *,
    tenant_id: str,
    message_id: str,
    contact: str,
    from_address: str,
    conversation_id: str | None,
    campaign_id: str | None,
    sent_at: datetime,
) -> None:
    """Remember a sent Message-ID; a retry's second record of it is a no-op. Commits."""
    conn = await session.connection()
    await conn.execute(
        insert(conn, _THREADS)
        .values(
            tenant_id=tenant_id,
            message_id=message_id,
            contact=contact,
            from_address=from_address,
            conversation_id=conversation_id,
            campaign_id=campaign_id,
            sent_at=sent_at,
        )
        .on_conflict_do_nothing(index_elements=[_THREADS.c.tenant_id, _THREADS.c.message_id])
    )
    await session.commit()


async def sent_with_ids(
    session: AsyncSession, *, tenant_id: str, message_ids: Sequence[str]
) -> dict[str, EmailThread]:
    """Our sent mails among `message_ids`, by Message-ID."""
    if not message_ids:
        return {}
    statement = select(EmailThread).where(
        EmailThread.tenant_id == tenant_id, col(EmailThread.message_id).in_(list(message_ids))
    )
    return {row.message_id: row for row in (await session.exec(statement)).all()}


async def is_our_address(session: AsyncSession, *, tenant_id: str, address: str) -> bool:
    """True when leadflow has sent mail from `address` (lower-cased) for this tenant."""
    statement = (
        select(EmailThread.message_id)
        .where(EmailThread.tenant_id == tenant_id, EmailThread.from_address == address)
        .limit(1)
    )
    return (await session.exec(statement)).first() is not None


async def mark_leads_bounced(
    session: AsyncSession, *, tenant_id: str, address: str, at: datetime, bounce: str
) -> int:
    """Mark every lead of the tenant with this e-mail address (its `email`, or the address of
    an e-mail lead) as hard-bounced. A lead already marked keeps its first bounce. The number
    of leads marked now; the caller commits."""
    address = address.strip().lower()
    statement = (
        update(_LEADS)
        .where(
            _LEADS.c.tenant_id == tenant_id,
            _LEADS.c.email_bounced_at.is_(None),
            or_(
                func.lower(_LEADS.c.email) == address,
                (_LEADS.c.channel == "email") & (func.lower(_LEADS.c.address) == address),
            ),
        )
        .values(email_bounced_at=at, email_bounce=bounce[:500], updated_at=at)
    )
    conn = await session.connection()
    result = await conn.execute(statement)
    return max(result.rowcount or 0, 0)
