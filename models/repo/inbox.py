"""The webhook inbox (models/inbox_tables.py): put before the acknowledgement, leased while a
process delivers, deleted once Temporal has the message."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Insert, delete, func, insert, tuple_, update
from sqlalchemy import select as core_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.conversation import conversation_workflow_id
from models.identity import message_key
from models.identity_tables import InboundKey
from models.inbox_tables import InboxMessage
from models.messages import InboundMessage
from models.repo.sql import table_of
from models.tables import utcnow

_TABLE = table_of(InboxMessage)
_INSERT = insert(_TABLE).returning(_TABLE.c.id, sort_by_parameter_order=True)
_KEYS = table_of(InboundKey)
_KEY_COLUMNS = (_KEYS.c.tenant_id, _KEYS.c.channel, _KEYS.c.key)
MAX_KEY_LENGTH = 200  # InboundKey.key; longer keys (an e-mail Message-ID can be long) are hashed


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A message whose key was received before: not stored, delivered nowhere."""

    key: str
    workflow_id: str  # where the first copy went


def stored_key(message: InboundMessage) -> str:
    """The message's dedup key as stored: `message_key`, hashed when longer than the column."""
    key = message_key(message.channel, message.provider_message_id)
    if len(key) <= MAX_KEY_LENGTH:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


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


def key_rows(
    messages: Sequence[InboundMessage], rows: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The InboundKey rows of `messages` (their inbox `rows` from `new_rows`, in the same order)."""
    return [
        {
            "tenant_id": m.tenant_id,
            "channel": m.channel.value,
            "key": stored_key(m),
            "workflow_id": row["workflow_id"],
            "received_at": row["created_at"],
        }
        for m, row in zip(messages, rows, strict=True)
    ]


def _insert_keys(connection: Connection) -> Insert:
    # The same `ON CONFLICT DO NOTHING` as models/repo/sql.py, on the sync connection the inbox
    # writes through.
    dialect = connection.dialect.name
    if dialect == "sqlite":
        return sqlite.insert(_KEYS).on_conflict_do_nothing().returning(*_KEY_COLUMNS)
    if dialect == "postgresql":
        return postgresql.insert(_KEYS).on_conflict_do_nothing().returning(*_KEY_COLUMNS)
    raise NotImplementedError(f"no INSERT … ON CONFLICT for the {dialect!r} dialect")


def write(
    connection: Connection,
    rows: Sequence[dict[str, Any]],
    delivered: Sequence[int],
    keys: Sequence[dict[str, Any]] | None = None,
) -> list[int | Duplicate]:
    """The API's one inbox write (the caller's transaction, plain Core on a sync connection: it
    runs for every webhook): delete the `delivered` rows, insert `rows` (from `new_rows`);
    returns the new rows' ids in their order.

    With `keys` (from `key_rows`, one per row) a row is inserted only when its key is new: the
    keys go in first with `ON CONFLICT DO NOTHING`, in the same transaction, so of two copies of
    a message (a redelivery, WAHA's @c.us/@lid twins), however close, exactly one is stored;
    the other's place in the answer is a `Duplicate`. One more statement per write, plus a
    SELECT only when there is a duplicate to report.

    The API runs it in one thread hop on SQLite, through `AsyncConnection.run_sync` elsewhere,
    and groups the webhooks (and the deliveries) that arrive meanwhile into one transaction."""
    if delivered:
        connection.execute(delete(_TABLE).where(_TABLE.c.id.in_(delivered)))
    if not rows:
        return []
    if keys is None:
        return list(connection.execute(_INSERT, list(rows)).scalars())
    ident = [(k["tenant_id"], k["channel"], k["key"]) for k in keys]
    first: dict[tuple[str, str, str], int] = {}
    for index, key in enumerate(ident):
        first.setdefault(key, index)  # twins within one batch: the first one wins
    fresh = [keys[index] for index in first.values()]
    new = {tuple(r) for r in connection.execute(_insert_keys(connection), fresh)}
    keep = [index for index, key in enumerate(ident) if key in new and first[key] == index]
    ids = iter(connection.execute(_INSERT, [rows[i] for i in keep]).scalars()) if keep else iter(())
    owners = {key: keys[first[key]]["workflow_id"] for key in new}
    seen_before = [key for key in first if key not in new]
    if seen_before:
        found = connection.execute(
            core_select(*_KEY_COLUMNS, _KEYS.c.workflow_id).where(
                tuple_(*_KEY_COLUMNS).in_(seen_before)
            )
        )
        owners.update({(t, c, k): w for t, c, k, w in found})
    kept = set(keep)
    return [
        next(ids) if index in kept else Duplicate(key=key[2], workflow_id=owners.get(key, "?"))
        for index, key in enumerate(ident)
    ]


def prune_keys(connection: Connection, *, older_than: datetime, limit: int) -> int:
    """Delete up to `limit` message keys received before `older_than`; returns how many."""
    oldest = (
        core_select(_KEYS.c.id)
        .where(_KEYS.c.received_at < older_than)
        .order_by(_KEYS.c.id)
        .limit(limit)
        .scalar_subquery()
    )
    result = connection.execute(delete(_KEYS).where(_KEYS.c.id.in_(oldest)))
    return int(result.rowcount or 0)


async def put(
    session: AsyncSession, messages: Sequence[InboundMessage], *, lease: timedelta
) -> list[InboxMessage]:
    """Store the messages (in their order) leased to the caller, but for those whose key was
    received before; commits. (The API writes through `write`; this is for scripts and tests.)"""
    rows = new_rows(messages, lease=lease)
    connection = await session.connection()
    ids = await connection.run_sync(write, rows, (), key_rows(messages, rows))
    await session.commit()
    return [
        InboxMessage(id=row_id, **row)
        for row_id, row in zip(ids, rows, strict=True)
        if isinstance(row_id, int)
    ]


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
