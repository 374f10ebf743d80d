"""The outbox: one row per message leadflow sends (or would send), keyed by its idempotency key.

A row is claimed ("pending") before the provider is called and marked afterwards: "sent" when a
provider took it, "stored" when the tenant has no such channel (the embedded default), "failed"
when the provider refused it for good. A claim that finds a "sent" or "stored" row tells the
caller not to call the provider again.

A "pending" row that a send finds already there (not one it just inserted) is the duplicate-send
window: an earlier attempt claimed it and then crashed, timed out or failed transiently, maybe
after the provider took the message. `claim_send` tells the two apart so the send can ask the
provider first (activities/channels/activities.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.messages import OutboundMessage
from models.repo.sql import insert, table_of
from models.tables import OutboxMessage, utcnow

PENDING = "pending"
SENT = "sent"
STORED = "stored"
FAILED = "failed"
FINAL_STATUSES = frozenset({SENT, STORED})
"""Statuses after which a send with the same key is a duplicate. "failed" is not among them: a
new attempt (after the tenant fixed its settings) may send it."""

DEFAULT_LIST_LIMIT = 100

_OUTBOX = table_of(OutboxMessage)


class OutboxKeyConflict(Exception):
    """The idempotency key is already used by another tenant's message."""


class OutboxMessageNotFound(LookupError):
    pass


async def get_outbox_message(
    session: AsyncSession, *, idempotency_key: str
) -> OutboxMessage | None:
    statement = select(OutboxMessage).where(OutboxMessage.idempotency_key == idempotency_key)
    return (await session.exec(statement)).first()


def _row(row: Row[Any]) -> OutboxMessage:
    # An OutboxMessage (not attached to the session) of a RETURNING row, whose values already
    # went through the column types (aware datetimes) as a select's would.
    return OutboxMessage.model_validate(dict(row._mapping))


def _same_tenant(row: OutboxMessage, message: OutboundMessage) -> OutboxMessage:
    # The key is unique across tenants; never hand one tenant's row (and its status) to another.
    if row.tenant_id != message.tenant_id:
        raise OutboxKeyConflict(
            f"idempotency key {message.idempotency_key!r} belongs to another tenant"
        )
    return row


@dataclass(frozen=True)
class Claim:
    row: OutboxMessage
    fresh: bool
    """True when this call inserted the row; False when an earlier (or concurrent) attempt had."""


async def claim(session: AsyncSession, *, message: OutboundMessage) -> OutboxMessage:
    """The row for `message.idempotency_key`: the existing one, or a new "pending" row."""
    return (await claim_send(session, message=message)).row


async def claim_send(session: AsyncSession, *, message: OutboundMessage) -> Claim:
    """The row for `message.idempotency_key` (the existing one, or a new "pending" row), and
    whether this call created it.

    One `INSERT … ON CONFLICT (idempotency_key) DO NOTHING RETURNING` (statements are worker
    CPU, issue 8): a fresh key is claimed by that statement alone; a known key inserts nothing
    and is read. Two concurrent claims of one key are settled by the unique constraint, so both
    callers see the same row on SQLite and PostgreSQL alike."""
    conn = await session.connection()
    statement = (
        insert(conn, _OUTBOX)
        .values(
            tenant_id=message.tenant_id,
            idempotency_key=message.idempotency_key,
            conversation_id=message.conversation_id,
            channel=str(message.channel),
            to=message.to,
            text=message.text,
            thread=message.thread,
            status=PENDING,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=[_OUTBOX.c.idempotency_key])
        .returning(*_OUTBOX.c)
    )
    # Twice at most: the row that made the insert do nothing may be gone by the time it is read
    # (no code deletes outbox rows, an operator may); the second insert then claims the key.
    for _ in range(2):
        inserted = (await conn.execute(statement)).first()
        await session.commit()
        if inserted is not None:
            return Claim(_row(inserted), fresh=True)
        existing = await get_outbox_message(session, idempotency_key=message.idempotency_key)
        if existing is not None:
            return Claim(_same_tenant(existing, message), fresh=False)
        conn = await session.connection()
    raise OutboxMessageNotFound(
        f"outbox key {message.idempotency_key!r} conflicts on insert but cannot be read"
    )


async def _mark(
    session: AsyncSession,
    *,
    idempotency_key: str,
    status: str,
    delivered_via: str | None,
    provider_message_id: str | None = None,
) -> OutboxMessage:
    """One `UPDATE … RETURNING` (not a read, then a write): statements are worker CPU."""
    conn = await session.connection()
    updated = (
        await conn.execute(
            update(_OUTBOX)
            .where(_OUTBOX.c.idempotency_key == idempotency_key)
            .values(
                status=status,
                delivered_via=delivered_via,
                provider_message_id=provider_message_id,
                sent_at=utcnow() if status in FINAL_STATUSES else None,
            )
            .returning(*_OUTBOX.c)
        )
    ).first()
    if updated is None:
        await session.rollback()
        raise OutboxMessageNotFound(f"no outbox message with key {idempotency_key!r}")
    await session.commit()
    return _row(updated)


async def mark_sent(
    session: AsyncSession,
    *,
    idempotency_key: str,
    delivered_via: str,
    provider_message_id: str | None,
) -> OutboxMessage:
    return await _mark(
        session,
        idempotency_key=idempotency_key,
        status=SENT,
        delivered_via=delivered_via,
        provider_message_id=provider_message_id,
    )


async def mark_stored(
    session: AsyncSession, *, idempotency_key: str, delivered_via: str = "outbox"
) -> OutboxMessage:
    return await _mark(
        session, idempotency_key=idempotency_key, status=STORED, delivered_via=delivered_via
    )


async def mark_failed(
    session: AsyncSession, *, idempotency_key: str, delivered_via: str | None = None
) -> OutboxMessage:
    return await _mark(
        session, idempotency_key=idempotency_key, status=FAILED, delivered_via=delivered_via
    )


async def same_text_since(
    session: AsyncSession, *, message: OutboundMessage, since: datetime
) -> list[str | None]:
    """The provider ids (None when not known) of the tenant's other sends of `message.text` to
    the same recipient on the same channel, claimed or sent at or after `since`, sent or still
    pending. A provider message found by text may be one of theirs: the same text sent twice
    within the check's window."""
    statement = select(OutboxMessage.provider_message_id).where(
        OutboxMessage.tenant_id == message.tenant_id,
        OutboxMessage.channel == str(message.channel),
        OutboxMessage.to == message.to,
        OutboxMessage.text == message.text,
        OutboxMessage.idempotency_key != message.idempotency_key,
        col(OutboxMessage.status).in_([PENDING, SENT]),
        or_(col(OutboxMessage.created_at) >= since, col(OutboxMessage.sent_at) >= since),
    )
    return list((await session.exec(statement)).all())


async def list_outbox(
    session: AsyncSession,
    *,
    tenant_id: str,
    conversation_id: str | None = None,
    status: str | None = None,
    limit: int = DEFAULT_LIST_LIMIT,
) -> list[OutboxMessage]:
    """The tenant's outbox, newest first."""
    statement = select(OutboxMessage).where(OutboxMessage.tenant_id == tenant_id)
    if conversation_id is not None:
        statement = statement.where(OutboxMessage.conversation_id == conversation_id)
    if status is not None:
        statement = statement.where(OutboxMessage.status == status)
    statement = statement.order_by(col(OutboxMessage.id).desc()).limit(max(1, limit))
    return list((await session.exec(statement)).all())
