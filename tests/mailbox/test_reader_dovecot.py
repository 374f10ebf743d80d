"""The reader whole — workflow, activity, models.email_in — on the real dev server against a
Dovecot without IDLE: it polls every `poll_seconds`, stores what it reads in the webhook inbox
(no API here: the rows wait for a sweeper), and survives a renumbered folder (UIDVALIDITY)
without storing a mail twice."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlmodel import col, select
from temporalio.client import Client
from temporalio.worker import Worker

from activities.mailbox import MailboxActivities
from models import mailbox as mailbox_model
from models.db import Database
from models.inbox_tables import InboxMessage
from models.mailbox import (
    MailboxStatus,
    ReaderState,
    ensure_mailbox_reader,
    mailbox_status,
)
from models.messages import InboundMessage
from models.settings import Settings
from models.tenant import TenantSettings
from tests.conftest import make_tenant
from tests.mailbox.conftest import Dovecot, mail
from workflows.mailbox import MailboxReaderWorkflow

pytestmark = pytest.mark.timeout(240)


async def until(
    client: Client, tenant_id: str, check: Callable[[MailboxStatus], bool], what: str
) -> MailboxStatus:
    deadline = asyncio.get_running_loop().time() + 120
    current: MailboxStatus | None = None
    while asyncio.get_running_loop().time() < deadline:
        current = await mailbox_status(client, tenant_id)
        if current is not None and check(current):
            return current
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}: {current}")


async def inbox(db: Database) -> list[InboundMessage]:
    async with db.session() as session:
        rows = (await session.exec(select(InboxMessage).order_by(col(InboxMessage.id)))).all()
    return [InboundMessage.model_validate_json(r.message) for r in rows]


@pytest.fixture
async def reader_worker(
    temporal_client: Client,
    sqlite_db: Database,
    sqlite_url: str,
    settings_factory: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Any]:
    queue = f"tq-reader-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(mailbox_model, "TASK_QUEUE", queue)
    settings = settings_factory(sqlite_url)
    async with Worker(
        temporal_client,
        task_queue=queue,
        workflows=[MailboxReaderWorkflow],
        activities=[MailboxActivities(sqlite_db, settings).read_mailbox],
    ):
        yield


async def test_a_server_without_idle_is_polled_and_a_renumbering_reads_nothing_twice(
    temporal_client: Client,
    sqlite_db: Database,
    dovecot_without_idle: Dovecot,
    reader_worker: Any,
) -> None:
    dovecot = dovecot_without_idle
    user = dovecot.user()
    imap = dovecot.settings(user, poll_seconds=5)
    tenant_id, _ = await make_tenant(sqlite_db, settings=TenantSettings(imap=imap))
    await ensure_mailbox_reader(temporal_client, tenant_id=tenant_id, imap=imap)
    polling = await until(
        temporal_client,
        tenant_id,
        lambda s: s.state == ReaderState.POLLING and s.cursor is not None,
        "polling",
    )
    assert polling.idle_supported is False and polling.connected

    await dovecot.append(user, mail(sender="Jan Lead <jan@lead.example>", subject="Golf"))
    read = await until(temporal_client, tenant_id, lambda s: s.counts.routed == 1, "one routed")
    assert read.counts.read == 1
    [message] = await inbox(sqlite_db)
    assert message.contact == "jan@lead.example" and message.tenant_id == tenant_id

    # The folder is renumbered (a server migration): the reader resyncs from shortly before its
    # last look, reads the mail that arrived since, and drops the one it had delivered.
    await dovecot.append(user, mail(sender="Jan Lead <jan@lead.example>", subject="Polo too?"))
    dovecot.renumber(user)
    resynced = await until(
        temporal_client, tenant_id, lambda s: s.resyncs == 2 and s.counts.routed == 2, "resync"
    )
    assert resynced.cursor is not None and polling.cursor is not None
    assert resynced.cursor.uidvalidity != polling.cursor.uidvalidity
    # Re-read: the first mail, and the second too if a poll took it before the renumbering.
    assert resynced.counts.duplicates in (1, 2)
    assert resynced.counts.read == 2 + resynced.counts.duplicates
    assert [m.text for m in await inbox(sqlite_db)] == [
        "Yes, I'd like a test drive on Saturday.",
    ] * 2
