"""send_message and notify_specialist through temporalio's ActivityEnvironment, on SQLite and a
real PostgreSQL (the `db` fixture), against the wire fakes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import turn_steps
from activities.channels.activities import ChannelActivities, builtin_channel_adapters
from activities.channels.base import CHANNEL_REJECTED
from models.common import Channel, Role, Stage
from models.conversation import (
    NotifyResult,
    NotifySpecialistInput,
    RecordTurnInput,
    SendAndRecordInput,
    SendAndRecordResult,
    conversation_workflow_id,
    lead_id_for,
)
from models.db import Database
from models.messages import OutboundMessage, SendResult, TranscriptEntry
from models.repo import conversations as conversation_repo
from models.repo import outbox as outbox_repo
from models.settings import Settings
from models.tables import OutboxMessage
from models.tenant import Specialist, TenantSettings
from tests.conftest import TEST_SECRET, make_tenant
from tests.fakes.chatwoot import FakeChatwoot
from tests.fakes.fixtures import *  # noqa: F403
from tests.fakes.meta import FakeMeta
from tests.fakes.smtp import SmtpServer
from tests.fakes.waha import FakeWaha

SPECIALIST = Specialist(
    name="Sanne",
    role="sales_manager",
    whatsapp="+31 6 9999 0000",
    email="sanne@dealer.example",
    chatwoot_agent_id=7,
)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


@pytest.fixture
def channels(db: Database, http: httpx.AsyncClient) -> ChannelActivities:
    settings = Settings(secret_key=TEST_SECRET, database_url=db.url)
    return ChannelActivities(db, settings, http, builtin_channel_adapters(http))


async def send(channels: ChannelActivities, message: OutboundMessage) -> SendResult:
    result: SendResult = await ActivityEnvironment().run(channels.send_message, message)
    return result


async def notify(channels: ChannelActivities, request: NotifySpecialistInput) -> NotifyResult:
    result: NotifyResult = await ActivityEnvironment().run(channels.notify_specialist, request)
    return result


async def outbox_row(db: Database, key: str) -> OutboxMessage:
    async with db.session() as session:
        row = await outbox_repo.get_outbox_message(session, idempotency_key=key)
    assert row is not None
    return row


def reply(tenant_id: str, channel: Channel, to: str, key: str, **kw: object) -> OutboundMessage:
    values: dict[str, object] = {
        "tenant_id": tenant_id,
        "channel": channel,
        "to": to,
        "text": "Saturday at 10:00 works for the test drive.",
        "idempotency_key": key,
        "conversation_id": conversation_workflow_id(tenant_id, channel, to),
    }
    values.update(kw)
    return OutboundMessage.model_validate(values)


def alert(tenant_id: str, via: str, key: str, **kw: object) -> NotifySpecialistInput:
    values: dict[str, object] = {
        "tenant_id": tenant_id,
        "conversation_id": conversation_workflow_id(tenant_id, "waha", "31612345678@c.us"),
        "specialist": SPECIALIST,
        "via": via,
        "text": "Jan (score 82, HOT) asks for a price on the Golf. Please take over.",
        "idempotency_key": key,
    }
    values.update(kw)
    return NotifySpecialistInput.model_validate(values)


# -- send_message ----------------------------------------------------------------------------------


async def test_sending_twice_with_one_key_reaches_waha_once(
    db: Database, channels: ChannelActivities, fake_waha: FakeWaha
) -> None:
    tid, _ = await make_tenant(db, settings=TenantSettings(waha=fake_waha.settings()))
    message = reply(tid, Channel.WAHA, "31612345678@c.us", "turn-1")

    first = await send(channels, message)
    second = await send(channels, message)

    assert len(fake_waha.sent) == 1
    assert fake_waha.sent[0]["chatId"] == "31612345678@c.us"
    assert first.delivered_via == "waha" and first.duplicate is False
    assert first.provider_message_id is not None
    assert second == SendResult(
        provider_message_id=first.provider_message_id, delivered_via="waha", duplicate=True
    )
    row = await outbox_row(db, "turn-1")
    assert (row.status, row.delivered_via, row.provider_message_id) == (
        "sent",
        "waha",
        first.provider_message_id,
    )
    assert row.sent_at is not None and row.tenant_id == tid


async def test_no_channel_configured_stores_the_message_in_the_outbox(
    db: Database, channels: ChannelActivities, fake_waha: FakeWaha
) -> None:
    tid, _ = await make_tenant(db)  # no channel settings at all
    message = reply(tid, Channel.WAHA, "31612345678@c.us", "turn-stored")

    result = await send(channels, message)
    again = await send(channels, message)

    assert result == SendResult(provider_message_id=None, delivered_via="outbox")
    assert again.duplicate is True and again.delivered_via == "outbox"
    row = await outbox_row(db, "turn-stored")
    assert row.status == "stored"
    assert (row.to, row.text, row.channel) == (message.to, message.text, "waha")
    assert fake_waha.requests == []
    async with db.session() as session:
        listed = await outbox_repo.list_outbox(
            session, tenant_id=tid, conversation_id=message.conversation_id
        )
    assert [r.idempotency_key for r in listed] == ["turn-stored"]


async def test_a_configured_channel_that_fails_is_retried_never_stored(
    db: Database, channels: ChannelActivities, fake_waha: FakeWaha
) -> None:
    tid, _ = await make_tenant(db, settings=TenantSettings(waha=fake_waha.settings()))
    message = reply(tid, Channel.WAHA, "31612345678", "turn-retry")
    fake_waha.fail_next(status=503, retry_after=2)

    with pytest.raises(ApplicationError) as caught:
        await send(channels, message)
    assert caught.value.non_retryable is False
    assert (await outbox_row(db, "turn-retry")).status == "pending"

    # Temporal's retry: same key, the provider is back.
    result = await send(channels, message)
    assert result.delivered_via == "waha" and result.duplicate is False
    assert len(fake_waha.sent) == 1
    assert (await outbox_row(db, "turn-retry")).status == "sent"


async def test_a_permanent_rejection_marks_the_row_failed(
    db: Database, channels: ChannelActivities, fake_waha: FakeWaha
) -> None:
    settings = TenantSettings(waha=fake_waha.settings(api_key="revoked"))
    tid, _ = await make_tenant(db, settings=settings)

    with pytest.raises(ApplicationError) as caught:
        await send(channels, reply(tid, Channel.WAHA, "31612345678", "turn-bad-key"))
    assert caught.value.type == CHANNEL_REJECTED and caught.value.non_retryable
    row = await outbox_row(db, "turn-bad-key")
    assert (row.status, row.delivered_via) == ("failed", "waha")
    assert fake_waha.sent == []


async def test_each_channel_goes_to_its_adapter(
    db: Database,
    channels: ChannelActivities,
    fake_meta: FakeMeta,
    fake_chatwoot: FakeChatwoot,
    smtp_server: SmtpServer,
) -> None:
    tid, _ = await make_tenant(
        db,
        settings=TenantSettings(
            whatsapp=fake_meta.whatsapp_settings(),
            messenger=fake_meta.messenger_settings(),
            chatwoot=fake_chatwoot.settings(),
            smtp=smtp_server.settings(),
        ),
    )
    results = [
        await send(channels, reply(tid, Channel.WHATSAPP, "31612345678", "k-wa")),
        await send(channels, reply(tid, Channel.MESSENGER, "1254459154682919", "k-fb")),
        await send(channels, reply(tid, Channel.CHATWOOT, "contact-1", "k-cw", thread="42")),
        await send(
            channels, reply(tid, Channel.EMAIL, "jan@example.com", "k-mail", thread="Golf price")
        ),
    ]
    assert [r.delivered_via for r in results] == ["whatsapp", "messenger", "chatwoot", "email"]
    assert fake_meta.whatsapp_sent[0]["to"] == "31612345678"
    assert fake_meta.messenger_sent[0]["recipient"] == {"id": "1254459154682919"}
    assert [m["content"] for m in fake_chatwoot.replies(42)] == [
        "Saturday at 10:00 works for the test drive."
    ]
    assert smtp_server.messages[0].message["Subject"] == "Re: Golf price"
    async with db.session() as session:
        rows = await outbox_repo.list_outbox(session, tenant_id=tid, status="sent")
    assert {r.idempotency_key for r in rows} == {"k-wa", "k-fb", "k-cw", "k-mail"}


async def test_unknown_tenant_and_foreign_key_are_permanent(
    db: Database, channels: ChannelActivities
) -> None:
    with pytest.raises(ApplicationError) as caught:
        await send(channels, reply("nobody", Channel.WAHA, "31612345678", "k-nobody"))
    assert caught.value.type == "TenantNotFound" and caught.value.non_retryable

    a, _ = await make_tenant(db)
    b, _ = await make_tenant(db)
    await send(channels, reply(a, Channel.WAHA, "31612345678", "shared-key"))
    with pytest.raises(ApplicationError) as caught:
        await send(channels, reply(b, Channel.WAHA, "31612345678", "shared-key"))
    assert caught.value.type == "IdempotencyKeyConflict" and caught.value.non_retryable
    assert (await outbox_row(db, "shared-key")).tenant_id == a


async def test_concurrent_claims_of_one_key_get_the_same_row(db: Database) -> None:
    tid, _ = await make_tenant(db)
    message = reply(tid, Channel.EMAIL, "jan@example.com", "race-key")

    async def claim() -> OutboxMessage:
        async with db.session() as session:
            return await outbox_repo.claim(session, message=message)

    rows = await asyncio.gather(*(claim() for _ in range(5)))
    assert len({row.id for row in rows}) == 1
    assert all(row.status == "pending" for row in rows)
    async with db.session() as session:
        assert len(await outbox_repo.list_outbox(session, tenant_id=tid)) == 1


async def test_claim_of_a_key_another_worker_committed_returns_that_row(db: Database) -> None:
    """The race of two workers on one key: the loser's insert does nothing, and it reads the
    winner's row (here already sent) instead of sending again."""
    tid, _ = await make_tenant(db)
    message = reply(tid, Channel.EMAIL, "jan@example.com", "lost-race")
    async with db.session() as session:
        winner = await outbox_repo.claim(session, message=message)
        await outbox_repo.mark_sent(
            session, idempotency_key="lost-race", delivered_via="email", provider_message_id="<x@y>"
        )
    async with db.session() as session:
        row = await outbox_repo.claim(session, message=message)
    assert (row.id, row.status, row.provider_message_id) == (winner.id, "sent", "<x@y>")
    async with db.session() as session:
        rows = await outbox_repo.list_outbox(session, tenant_id=tid)
    assert [r.idempotency_key for r in rows] == ["lost-race"]


# -- notify_specialist -----------------------------------------------------------------------------


async def test_notify_by_email_reaches_the_smtp_server_once(
    db: Database, channels: ChannelActivities, smtp_server: SmtpServer
) -> None:
    tid, _ = await make_tenant(db, settings=TenantSettings(smtp=smtp_server.settings()))
    request = alert(tid, "email", "esc-1:sanne:email")

    first = await notify(channels, request)
    second = await notify(channels, request)

    [mail] = smtp_server.messages
    assert mail.rcpt_tos == ("sanne@dealer.example",)
    assert mail.message["Subject"] == f"A lead needs you: {request.conversation_id}"
    assert mail.message.get_content().strip() == request.text
    assert first.ok and first.specialist == "Sanne" and first.via == "email"
    assert mail.message["Message-ID"] in first.detail
    assert second.ok and "already done" in second.detail
    assert (await outbox_row(db, "esc-1:sanne:email")).status == "sent"


async def test_notify_via_chatwoot_assigns_and_leaves_a_private_note(
    db: Database, channels: ChannelActivities, fake_chatwoot: FakeChatwoot
) -> None:
    tid, _ = await make_tenant(db, settings=TenantSettings(chatwoot=fake_chatwoot.settings()))
    request = alert(tid, "chatwoot", "esc-1:sanne:chatwoot", chatwoot_conversation_id="42")

    result = await notify(channels, request)
    await notify(channels, request)  # a duplicate changes nothing

    assert result.ok and result.via == "chatwoot"
    assert fake_chatwoot.assignments == [{"conversation_id": 42, "assignee_id": 7}]
    [note] = fake_chatwoot.private_notes(42)
    assert note["content"] == request.text
    assert fake_chatwoot.replies() == []  # the lead never sees the alert
    row = await outbox_row(db, "esc-1:sanne:chatwoot")
    assert (row.status, row.delivered_via, row.provider_message_id) == (
        "sent",
        "chatwoot",
        str(note["id"]),
    )


async def test_notify_via_chatwoot_retries_after_a_transient_failure(
    db: Database, channels: ChannelActivities, fake_chatwoot: FakeChatwoot
) -> None:
    tid, _ = await make_tenant(db, settings=TenantSettings(chatwoot=fake_chatwoot.settings()))
    request = alert(tid, "chatwoot", "esc-2:sanne:chatwoot", chatwoot_conversation_id="42")
    fake_chatwoot.fail_next(1, status=500, path_contains="/messages")

    with pytest.raises(ApplicationError) as caught:
        await notify(channels, request)
    assert caught.value.non_retryable is False
    result = await notify(channels, request)

    assert result.ok
    assert len(fake_chatwoot.private_notes(42)) == 1
    # Assigned on both attempts: harmless, the same agent.
    assert fake_chatwoot.assignments == [{"conversation_id": 42, "assignee_id": 7}] * 2


async def test_notify_by_whatsapp_prefers_waha_then_meta(
    db: Database, channels: ChannelActivities, fake_waha: FakeWaha, fake_meta: FakeMeta
) -> None:
    both = TenantSettings(waha=fake_waha.settings(), whatsapp=fake_meta.whatsapp_settings())
    tid, _ = await make_tenant(db, settings=both)
    result = await notify(channels, alert(tid, "whatsapp", "esc-wa-1"))
    assert result.ok and "waha" in result.detail
    assert fake_waha.sent[0]["chatId"] == "31699990000@c.us"
    assert fake_meta.whatsapp_sent == []

    meta_only, _ = await make_tenant(
        db, settings=TenantSettings(whatsapp=fake_meta.whatsapp_settings())
    )
    result = await notify(channels, alert(meta_only, "whatsapp", "esc-wa-2"))
    assert result.ok and "whatsapp" in result.detail
    assert fake_meta.whatsapp_sent[0]["to"] == "31699990000"


async def test_notify_reports_what_it_could_not_do(
    db: Database, channels: ChannelActivities, fake_waha: FakeWaha
) -> None:
    tid, _ = await make_tenant(db)  # nothing configured
    stored = await notify(channels, alert(tid, "email", "esc-3:email"))
    assert not stored.ok and "stored in the outbox" in stored.detail
    assert (await outbox_row(db, "esc-3:email")).status == "stored"

    no_conversation = await notify(channels, alert(tid, "chatwoot", "esc-3:chatwoot"))
    assert not no_conversation.ok and "Chatwoot conversation" in no_conversation.detail

    no_phone = SPECIALIST.model_copy(update={"whatsapp": None})
    missing = await notify(channels, alert(tid, "whatsapp", "esc-3:wa", specialist=no_phone))
    assert not missing.ok and "no WhatsApp number" in missing.detail

    bad_key, _ = await make_tenant(
        db, settings=TenantSettings(waha=fake_waha.settings(api_key="revoked"))
    )
    refused = await notify(channels, alert(bad_key, "whatsapp", "esc-4:wa"))
    assert not refused.ok and "401" in refused.detail
    assert (await outbox_row(db, "esc-4:wa")).status == "failed"


# -- send_and_record (conversation version ≥ 2) ----------------------------------------------------


CONTACT = "31612345678@c.us"
AT = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def reply_and_turn(tid: str, *entries: TranscriptEntry, **record: object) -> SendAndRecordInput:
    """A version-2 turn's send: the reply to CONTACT on WAHA, and the turn to record with it."""
    conversation_id = conversation_workflow_id(tid, "waha", CONTACT)
    return SendAndRecordInput(
        message=reply(tid, Channel.WAHA, CONTACT, f"{conversation_id}:turn:1"),
        record=RecordTurnInput.model_validate(
            {
                "conversation_id": conversation_id,
                "tenant_id": tid,
                "channel": Channel.WAHA,
                "contact": CONTACT,
                "turn_key": "turn:1",
                "entries": entries,
                "stage": Stage.QUALIFYING,
                "lead_id": lead_id_for(tid, Channel.WAHA, CONTACT),
                **record,
            }
        ),
        knowledge_ids=("doc-1",),
        at=AT,
    )


async def test_send_and_record_sends_once_and_records_the_turn_once_when_retried(
    db: Database, channels: ChannelActivities, fake_waha: FakeWaha
) -> None:
    tid, _ = await make_tenant(db, settings=TenantSettings(waha=fake_waha.settings()))
    lead = TranscriptEntry(
        role=Role.LEAD, text="Is the Golf available?", at=AT, provider_message_id="in-1"
    )
    request = reply_and_turn(tid, lead, fields={"model": "Golf"}, turns=1)
    env = ActivityEnvironment()
    first: SendAndRecordResult = await env.run(channels.send_and_record, request)
    # A retry (the worker died after the send): the send is a duplicate, the record a no-op.
    again: SendAndRecordResult = await env.run(channels.send_and_record, request)

    assert len(fake_waha.sent) == 1
    assert first.sent.duplicate is False and first.lead_changed is True
    assert again.sent.duplicate is True and again.lead_changed is False
    async with db.session() as session:
        messages = await conversation_repo.transcript(
            session, conversation_id=request.record.conversation_id
        )
    assert [(m.role, m.text) for m in messages] == [
        ("lead", "Is the Golf available?"),
        ("ai", "Saturday at 10:00 works for the test drive."),
    ]
    assert messages[1].provider_message_id == first.sent.provider_message_id
    assert messages[1].knowledge_ids == ["doc-1"]


async def test_send_and_record_records_nothing_when_the_channel_refuses(
    db: Database, channels: ChannelActivities, fake_waha: FakeWaha
) -> None:
    tid, _ = await make_tenant(
        db, settings=TenantSettings(waha=fake_waha.settings(api_key="revoked-key"))
    )
    request = reply_and_turn(tid)
    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(channels.send_and_record, request)
    assert refused.value.non_retryable
    async with db.session() as session:
        transcript = await conversation_repo.transcript(
            session, conversation_id=request.record.conversation_id
        )
    assert transcript == []


async def test_a_record_that_fails_after_the_send_leaves_the_record_to_the_workflow(
    db: Database,
    channels: ChannelActivities,
    fake_waha: FakeWaha,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The send's bounded retries must not be spent on the database: the reply went out once,
    and the result tells the workflow to record the turn itself."""
    tid, _ = await make_tenant(db, settings=TenantSettings(waha=fake_waha.settings()))

    async def database_down(*_args: object) -> bool:
        raise OSError("database is down")

    monkeypatch.setattr(turn_steps, "record_turn", database_down)
    done: SendAndRecordResult = await ActivityEnvironment().run(
        channels.send_and_record, reply_and_turn(tid)
    )
    assert done.recorded is False and done.sent.duplicate is False
    assert len(fake_waha.sent) == 1
