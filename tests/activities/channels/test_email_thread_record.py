"""send_message remembers the Message-ID of every e-mail it sends through SMTP (mail in
threads the lead's reply by it): once per send, again after a retry whose record failed, and
never for a message that only went to the outbox."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlmodel import delete, select
from temporalio.testing import ActivityEnvironment

from activities.channels.activities import ChannelActivities, builtin_channel_adapters
from models.common import Channel
from models.db import Database
from models.email_tables import EmailThread
from models.messages import OutboundMessage, SendResult
from models.settings import Settings
from models.tenant import TenantSettings
from tests.conftest import TEST_SECRET, make_tenant
from tests.fakes.fixtures import *  # noqa: F403
from tests.fakes.smtp import SmtpServer


@pytest.fixture
async def channels(db: Database) -> AsyncIterator[ChannelActivities]:
    async with httpx.AsyncClient(timeout=5) as http:
        settings = Settings(secret_key=TEST_SECRET, database_url=db.url)
        yield ChannelActivities(db, settings, http, builtin_channel_adapters(http))


def outreach(tenant: str, key: str = "conv-1:outreach") -> OutboundMessage:
    return OutboundMessage(
        tenant_id=tenant,
        channel=Channel.EMAIL,
        to="Jan de Vries <Jan.DeVries@Example.nl>",
        text="Hallo Jan, uw Golf staat klaar.",
        idempotency_key=key,
        subject="Uw Golf staat klaar",
        conversation_id="conv:t:email:abc",
        campaign_id="camp-7",
    )


async def send(channels: ChannelActivities, message: OutboundMessage) -> SendResult:
    result: SendResult = await ActivityEnvironment().run(channels.send_message, message)
    return result


async def threads(db: Database) -> list[EmailThread]:
    async with db.session() as session:
        return list((await session.exec(select(EmailThread))).all())


async def test_an_smtp_send_records_its_message_id_once(
    db: Database, channels: ChannelActivities, smtp_server: SmtpServer
) -> None:
    tenant, _ = await make_tenant(db, settings=TenantSettings(smtp=smtp_server.settings()))
    first = await send(channels, outreach(tenant))
    again = await send(channels, outreach(tenant))  # a retried activity: no second mail

    [mail] = smtp_server.messages
    assert first.provider_message_id == mail.message["Message-ID"]
    assert again.duplicate is True
    [row] = await threads(db)
    assert row.tenant_id == tenant
    assert row.message_id == mail.message["Message-ID"]
    assert row.contact == "jan.devries@example.nl"  # as e-mail conversations are keyed
    assert row.from_address == "sales@dealer.example"
    assert (row.conversation_id, row.campaign_id) == ("conv:t:email:abc", "camp-7")


async def test_a_retry_records_what_a_failed_record_missed(
    db: Database, channels: ChannelActivities, smtp_server: SmtpServer
) -> None:
    tenant, _ = await make_tenant(db, settings=TenantSettings(smtp=smtp_server.settings()))
    await send(channels, outreach(tenant))
    async with db.session() as session:  # as if the record had failed after the send
        await session.exec(delete(EmailThread))
        await session.commit()
    assert await threads(db) == []
    retried = await send(channels, outreach(tenant))
    assert retried.duplicate is True and len(smtp_server.messages) == 1
    assert [row.message_id for row in await threads(db)] == [retried.provider_message_id]


async def test_outbox_only_mail_records_nothing(db: Database, channels: ChannelActivities) -> None:
    tenant, _ = await make_tenant(db)  # no SMTP: the message is stored, not sent
    result = await send(channels, outreach(tenant))
    assert result.delivered_via == "outbox"
    assert await threads(db) == []
