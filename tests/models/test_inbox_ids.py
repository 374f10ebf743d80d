"""Inbox ids are never handed out twice: a delivered row is deleted by id a moment after its
delivery, and must not take a newer message with it (models/inbox_tables.py, migration 0007)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, text

from models.common import Channel
from models.db import Database
from models.inbox_tables import InboxMessage
from models.messages import InboundMessage
from models.repo import inbox as inbox_repo


def _message(n: int) -> InboundMessage:
    return InboundMessage(
        tenant_id="t",
        channel=Channel.WAHA,
        contact="31600000000@c.us",
        provider_message_id=f"m{n}",
        text=f"message {n}",
        sent_at=datetime(2026, 11, 28, tzinfo=UTC),
    )


async def test_the_id_of_a_deleted_row_is_not_given_to_the_next_one(db: Database) -> None:
    async with db.session() as session:
        first, last = await inbox_repo.put(
            session, [_message(1), _message(2)], lease=timedelta(seconds=60)
        )
        await session.exec(delete(InboxMessage).where(InboxMessage.id == last.id))  # type: ignore[arg-type]
        await session.commit()
        (newer,) = await inbox_repo.put(session, [_message(3)], lease=timedelta(seconds=60))
    assert first.id is not None and last.id is not None and newer.id is not None
    assert newer.id > last.id


async def test_sqlite_declares_the_inbox_autoincrement(sqlite_db: Database) -> None:
    async with sqlite_db.engine.connect() as connection:
        sql = (
            await connection.execute(
                text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'inbox'")
            )
        ).scalar_one()
    assert "AUTOINCREMENT" in sql.upper()
