"""Cross-id dedup at the inbox (models/repo/inbox.py, models/identity_tables.py InboundKey), on
SQLite and PostgreSQL: the second copy of a message (a redelivery, WAHA's @c.us/@lid twin) is
not stored, whether it comes in the same write, a later one, or another API process's write at
the same moment; old keys are pruned in batches."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select
from temporalio.client import Client

from api import inbox as api_inbox
from api.inbox import InboxForwarder
from models.common import Channel
from models.conversation import conversation_workflow_id
from models.db import Database
from models.identity_tables import InboundKey
from models.inbox_tables import InboxMessage
from models.messages import InboundMessage
from models.repo import inbox as inbox_repo
from models.settings import Settings
from models.tables import utcnow
from models.webhooks import Delivered

PHONE = "6281234567890@c.us"
LID = "176369157804064@lid"
LEASE = timedelta(seconds=60)


def message(
    contact: str, message_id: str, *, tenant: str = "t", text: str = "hi"
) -> InboundMessage:
    return InboundMessage(
        tenant_id=tenant,
        channel=Channel.WAHA,
        contact=contact,
        provider_message_id=message_id,
        text=text,
        sent_at=datetime(2026, 11, 28, tzinfo=UTC),
    )


async def write(db: Database, messages: list[InboundMessage]) -> list[int | inbox_repo.Duplicate]:
    rows = inbox_repo.new_rows(messages, lease=LEASE)
    async with db.engine.begin() as connection:
        return await connection.run_sync(
            inbox_repo.write, rows, (), inbox_repo.key_rows(messages, rows)
        )


async def keys(db: Database) -> list[tuple[str, str, str, str]]:
    async with db.session() as session:
        found = (await session.exec(select(InboundKey).order_by(col(InboundKey.id)))).all()
    return [(k.tenant_id, k.channel, k.key, k.workflow_id) for k in found]


async def inbox(db: Database) -> list[InboxMessage]:
    async with db.session() as session:
        return list((await session.exec(select(InboxMessage))).all())


async def test_twin_in_a_later_write_is_a_duplicate(db: Database) -> None:
    (first,) = await write(db, [message(PHONE, "false_6281234567890@c.us_AAA")])
    (second,) = await write(db, [message(LID, "false_176369157804064@lid_AAA")])
    assert isinstance(first, int)
    phone_conversation = conversation_workflow_id("t", "waha", PHONE)
    assert second == inbox_repo.Duplicate(key="false_AAA", workflow_id=phone_conversation)
    assert [row.id for row in await inbox(db)] == [first]
    assert await keys(db) == [("t", "waha", "false_AAA", phone_conversation)]


async def test_twins_in_one_write_first_wins_and_others_pass(db: Database) -> None:
    result = await write(
        db,
        [
            message(LID, "false_176369157804064@lid_BBB", text="lid copy"),
            message(PHONE, "false_6281234567890@c.us_CCC", text="another message"),
            message(PHONE, "false_6281234567890@c.us_BBB", text="phone copy"),
            message(PHONE, "false_6281234567890@c.us_BBB", tenant="other", text="other tenant"),
        ],
    )
    lid_conversation = conversation_workflow_id("t", "waha", LID)
    assert isinstance(result[0], int) and isinstance(result[1], int)
    assert result[2] == inbox_repo.Duplicate(key="false_BBB", workflow_id=lid_conversation)
    assert isinstance(result[3], int)  # keys are per tenant
    texts = sorted(InboundMessage.model_validate_json(r.message).text for r in await inbox(db))
    assert texts == ["another message", "lid copy", "other tenant"]


async def test_long_keys_are_hashed_to_fit(db: Database) -> None:
    long_id = "<" + "x" * 600 + "@mail.example.com>"
    mail = message("jane@example.com", long_id).model_copy(update={"channel": Channel.EMAIL})
    (first,) = await write(db, [mail])
    (again,) = await write(db, [mail])
    assert isinstance(first, int)
    assert isinstance(again, inbox_repo.Duplicate) and again.key.startswith("sha256:")
    assert len(again.key) <= inbox_repo.MAX_KEY_LENGTH


async def test_two_api_processes_storing_twins_at_once_store_one(
    db: Database,
    database_url: str,
    settings_factory: Callable[..., Settings],
    temporal_client: Client,
    monkeypatch: Any,
) -> None:
    """Two API processes (two forwarders, each with its own writer and, on SQLite, its own
    engine) take the twins at the same moment: one stores, the other reports a duplicate."""
    delivered: list[str] = []

    async def deliver(_: Any, __: Any, msg: InboundMessage) -> Any:
        delivered.append(msg.contact)
        return Delivered(workflow_id="w", provider_message_id=msg.provider_message_id)

    monkeypatch.setattr(api_inbox, "deliver_inbound", deliver)

    async def client() -> Client:
        return temporal_client

    settings = settings_factory(database_url)
    a, b = InboxForwarder(settings, db, client), InboxForwarder(settings, db, client)
    try:
        for n in range(10):
            results = await asyncio.gather(
                a.accept([message(PHONE, f"false_{PHONE}_K{n}")]),
                b.accept([message(LID, f"false_{LID}_K{n}")]),
            )
            stored = [r for r in results if r.delivered]
            dropped = [r for r in results if r.duplicates]
            assert len(stored) == len(dropped) == 1, results
            (copy,) = dropped[0].duplicates
            assert f"duplicate of false_K{n}" in copy.reason()
    finally:
        await a.stop()
        await b.stop()
    assert len(delivered) == 10
    assert len(await keys(db)) == 10


async def test_old_keys_are_pruned_in_batches(
    db: Database, database_url: str, settings_factory: Callable[..., Settings], monkeypatch: Any
) -> None:
    await write(db, [message(PHONE, f"false_{PHONE}_OLD{n}") for n in range(7)])
    await write(db, [message(PHONE, f"false_{PHONE}_NEW{n}") for n in range(2)])
    async with db.session() as session:
        await session.exec(
            update(InboundKey)
            .where(col(InboundKey.key).like("false_OLD%"))
            .values(received_at=utcnow() - api_inbox.KEY_RETENTION - timedelta(minutes=1))
        )
        await session.commit()
    monkeypatch.setattr(api_inbox, "PRUNE_BATCH", 3)  # 3 + 3 + 1: three rounds

    async def no_client() -> Client:
        raise AssertionError("pruning needs no Temporal")

    forwarder = InboxForwarder(settings_factory(database_url), db, no_client)
    assert await forwarder.prune_keys() == 7
    assert [k[2] for k in await keys(db)] == ["false_NEW0", "false_NEW1"]
    assert await forwarder.prune_keys() == 0
    # A pruned key is new again (a redelivery after a week is a new message).
    (again,) = await write(db, [message(PHONE, f"false_{PHONE}_OLD0")])
    assert isinstance(again, int)
    await forwarder.stop()
