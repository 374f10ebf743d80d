"""The webhook inbox (models/inbox_tables.py): put before the acknowledgement, leased while a
process delivers, deleted once Temporal has the message."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, delete, func, insert, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.conversation import conversation_workflow_id
from models.inbox_tables import InboxMessage
from models.messages import InboundMessage
from models.repo.sql import table_of
from models.tables import utcnow

_TABLE = table_of(InboxMessage)
_INSERT = insert(_TABLE).returning(_TABLE.c.id, sort_by_parameter_order=True)


def new_rows(messages: Sequence[InboundMessage], *, lease: timedelta) -> list[dict[str, Any]]:
    """The inbox rows of `messages` (in their order), leased to the caller, who delivers them
    now: the values `write` inserts."""
    now = utcnow()
    until = now + lease
    return [
        {
            "workflow_id": conversation_workflow_id(m.tenant_id, m.channel, m.contact),
            "message": m.model_dump_json(),
            "created_at": now,
            "lease_until": until,
            "claim": None,
            "attempts": 0,
            "last_error": None,
        }
        for m in messages
    ]


def write(
    connection: Connection, rows: Sequence[dict[str, Any]], delivered: Sequence[int]
) -> list[int]:
    """The API's one inbox write (the caller's transaction, plain Core on a sync connection: it
    runs for every webhook): delete the `delivered` rows, insert `rows` (from `new_rows`);
    returns the new rows' ids in their order.

    The API runs it in one thread hop on SQLite, through `AsyncConnection.run_sync` elsewhere,
    and groups the webhooks (and the deliveries) that arrive meanwhile into one transaction."""
    if delivered:
        connection.execute(delete(_TABLE).where(_TABLE.c.id.in_(delivered)))
    if not rows:
        return []
    return list(connection.execute(_INSERT, list(rows)).scalars())


async def put(
    session: AsyncSession, messages: Sequence[InboundMessage], *, lease: timedelta
) -> list[InboxMessage]:
    """Store the messages (in their order) leased to the caller; commits. (The API writes
    through `write`; this is for scripts and tests.)"""
    rows = new_rows(messages, lease=lease)
    connection = await session.connection()
    ids = await connection.run_sync(write, rows, ())
    await session.commit()
    return [InboxMessage(id=row_id, **row) for row_id, row in zip(ids, rows, strict=True)]


async def claim_due(session: AsyncSession, *, limit: int, lease: timedelta) -> list[InboxMessage]:
    """Rows whose lease ran out (their deliverer failed, crashed or is retrying later), oldest
    first, leased to the caller; commits. Two processes never claim the same row: the lease is
    checked again by the UPDATE itself."""
    now = utcnow()
    due = (
        select(InboxMessage.id)
        .where(col(InboxMessage.lease_until) <= now)
        .order_by(col(InboxMessage.id))
        .limit(limit)
    )
    ids = list((await session.exec(due)).all())
    if not ids:
        return []
    token = uuid.uuid4().hex
    await session.exec(
        update(InboxMessage)
        .where(col(InboxMessage.id).in_(ids), col(InboxMessage.lease_until) <= now)
        .values(lease_until=now + lease, claim=token)
    )
    await session.commit()
    claimed = select(InboxMessage).where(col(InboxMessage.claim) == token)
    return sorted((await session.exec(claimed)).all(), key=lambda r: r.id or 0)


async def delivered(session: AsyncSession, ids: Sequence[int]) -> None:
    if ids:
        await session.exec(delete(InboxMessage).where(col(InboxMessage.id).in_(ids)))
        await session.commit()


async def retry_later(session: AsyncSession, row_id: int, *, after: timedelta, error: str) -> None:
    await session.exec(
        update(InboxMessage)
        .where(col(InboxMessage.id) == row_id)
        .values(
            lease_until=utcnow() + after,
            attempts=InboxMessage.attempts + 1,
            last_error=error[:2000],
        )
    )
    await session.commit()


async def pending(session: AsyncSession) -> tuple[int, float | None]:
    """How many messages wait for Temporal, and the age in seconds of the oldest (for /ready)."""
    count, oldest = (
        await session.exec(select(func.count(), func.min(InboxMessage.created_at)))
    ).one()
    if not count or oldest is None:
        return 0, None
    return int(count), (utcnow() - oldest).total_seconds()
