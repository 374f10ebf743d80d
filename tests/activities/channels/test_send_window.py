"""The duplicate-send window: a send retried after the provider took the message but before the
outbox row was marked sent. Driven through send_message (temporalio's ActivityEnvironment) over
real HTTP against the wire fakes, on SQLite and PostgreSQL (the `db` fixture).

The crash is reproduced as it happens: the row is claimed, the adapter's `send` reaches the
provider, and nothing marks the row (the worker died). The retry is the activity again."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from temporalio.testing import ActivityEnvironment

from activities.channels.activities import ChannelActivities, builtin_channel_adapters
from activities.channels.base import SENT_CHECK_MARGIN
from models.common import Channel
from models.conversation import NotifySpecialistInput, conversation_workflow_id
from models.db import Database
from models.messages import OutboundMessage, SendResult
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

TEXT = "Saturday at 10:00 works for the test drive."
CHAT = "31612345678@c.us"
ACTIVITY_LOG = "temporalio.activity"


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


@pytest.fixture
def channels(db: Database, http: httpx.AsyncClient) -> ChannelActivities:
    settings = Settings(secret_key=TEST_SECRET, database_url=db.url)
    return ChannelActivities(db, settings, http, builtin_channel_adapters(http))


def reply(tenant_id: str, channel: Channel, to: str, key: str, **kw: object) -> OutboundMessage:
    values: dict[str, object] = {
        "tenant_id": tenant_id,
        "channel": channel,
        "to": to,
        "text": TEXT,
        "idempotency_key": key,
        "conversation_id": conversation_workflow_id(tenant_id, channel, to),
    }
    values.update(kw)
    return OutboundMessage.model_validate(values)


async def send(channels: ChannelActivities, message: OutboundMessage) -> SendResult:
    result: SendResult = await ActivityEnvironment().run(channels.send_message, message)
    return result


async def claim_only(db: Database, message: OutboundMessage) -> OutboxMessage:
    """An attempt that claimed the row and died before (or while) calling the provider."""
    async with db.session() as session:
        return await outbox_repo.claim(session, message=message)


async def crash_after_send(
    db: Database, channels: ChannelActivities, message: OutboundMessage, settings: TenantSettings
) -> str | None:
    """The window itself: claimed, the provider took the message, the row never marked."""
    await claim_only(db, message)
    return await channels.adapters[str(message.channel)].send(message, settings)


async def outbox_row(db: Database, key: str) -> OutboxMessage:
    async with db.session() as session:
        row = await outbox_repo.get_outbox_message(session, idempotency_key=key)
    assert row is not None
    return row


def window_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == ACTIVITY_LOG]


# -- WAHA ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("id_style", ["string", "webjs"])
async def test_waha_retry_after_the_crash_records_the_sent_message_instead_of_sending(
    db: Database, channels: ChannelActivities, id_style: str, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeWaha(id_style=id_style) as waha:  # type: ignore[arg-type]
        settings = TenantSettings(waha=waha.settings())
        tid, _ = await make_tenant(db, settings=settings)
        message = reply(tid, Channel.WAHA, "+31 6 1234 5678", "window-waha")
        sent_id = await crash_after_send(db, channels, message, settings)
        assert sent_id is not None and (await outbox_row(db, "window-waha")).status == "pending"

        with caplog.at_level(logging.INFO, logger=ACTIVITY_LOG):
            result = await send(channels, message)
        again = await send(channels, message)

    assert len(waha.sent) == 1  # the crashed attempt's; the retry sent nothing
    assert result == SendResult(provider_message_id=sent_id, delivered_via="waha", duplicate=True)
    assert again == result
    row = await outbox_row(db, "window-waha")
    assert (row.status, row.delivered_via, row.provider_message_id) == ("sent", "waha", sent_id)
    assert row.sent_at is not None
    # One check, the documented query (wire/waha_lids_and_identity.md §6), from the claim on.
    [check] = waha.message_checks()
    assert check.path == f"/api/default/chats/{CHAT}/messages"
    assert check.headers["x-api-key"] == waha.api_key
    assert check.query["filter.fromMe"] == "true"
    assert check.query["downloadMedia"] == "false"
    assert int(check.query["limit"]) > 0
    claimed = row.created_at.timestamp()
    assert int(check.query["filter.timestamp.gte"]) == int(
        claimed - SENT_CHECK_MARGIN.total_seconds()
    )
    assert any("recorded, not sent again" in m and sent_id in m for m in window_messages(caplog))


async def test_waha_claimed_but_never_sent_is_sent_once(
    db: Database, channels: ChannelActivities, fake_waha: FakeWaha, caplog: pytest.LogCaptureFixture
) -> None:
    tid, _ = await make_tenant(db, settings=TenantSettings(waha=fake_waha.settings()))
    message = reply(tid, Channel.WAHA, CHAT, "window-waha-unsent")
    await claim_only(db, message)

    with caplog.at_level(logging.INFO, logger=ACTIVITY_LOG):
        result = await send(channels, message)
    again = await send(channels, message)

    assert [m["text"] for m in fake_waha.sent] == [TEXT]
    assert result.duplicate is False and result.provider_message_id is not None
    assert again.duplicate is True and again.provider_message_id == result.provider_message_id
    assert len(fake_waha.message_checks()) == 1  # the finished row needs no check
    row = await outbox_row(db, "window-waha-unsent")
    assert (row.status, row.provider_message_id) == ("sent", result.provider_message_id)
    assert any("has no such message" in m for m in window_messages(caplog))


async def test_waha_check_that_fails_sends_at_least_once_and_says_so(
    db: Database, channels: ChannelActivities, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeWaha() as waha:
        settings = TenantSettings(waha=waha.settings())
        tid, _ = await make_tenant(db, settings=settings)
        message = reply(tid, Channel.WAHA, CHAT, "window-waha-500")
        await crash_after_send(db, channels, message, settings)
        waha.fail_next(status=500)  # the check; the send after it goes through

        with caplog.at_level(logging.INFO, logger=ACTIVITY_LOG):
            result = await send(channels, message)

    [check] = waha.message_checks()
    assert [r.path for r in waha.requests] == ["/api/sendText", check.path, "/api/sendText"]
    assert len(waha.sent) == 2  # the duplicate the window allows when the provider cannot say
    assert result.duplicate is False and result.provider_message_id is not None
    assert (await outbox_row(db, "window-waha-500")).provider_message_id == (
        result.provider_message_id
    )
    [warning] = [r for r in caplog.records if r.name == ACTIVITY_LOG and r.levelname == "WARNING"]
    assert "at-least-once" in warning.getMessage()
    assert "HTTP 500" in warning.getMessage() and "window-waha-500" in warning.getMessage()


async def test_waha_check_answer_that_is_not_a_list_counts_as_failed(
    db: Database, channels: ChannelActivities, fake_waha: FakeWaha, caplog: pytest.LogCaptureFixture
) -> None:
    tid, _ = await make_tenant(db, settings=TenantSettings(waha=fake_waha.settings()))
    message = reply(tid, Channel.WAHA, CHAT, "window-waha-odd")
    await claim_only(db, message)
    fake_waha.failures.add(1, status=200, body={"messages": "not what WAHA answers"})

    with caplog.at_level(logging.INFO, logger=ACTIVITY_LOG):
        result = await send(channels, message)

    assert len(fake_waha.sent) == 1 and result.duplicate is False
    assert any("not a list" in m and "at-least-once" in m for m in window_messages(caplog))


async def test_a_first_send_makes_no_check(
    db: Database, channels: ChannelActivities, fake_waha: FakeWaha, fake_chatwoot: FakeChatwoot
) -> None:
    settings = TenantSettings(waha=fake_waha.settings(), chatwoot=fake_chatwoot.settings())
    tid, _ = await make_tenant(db, settings=settings)

    await send(channels, reply(tid, Channel.WAHA, CHAT, "first-waha"))
    await send(channels, reply(tid, Channel.CHATWOOT, "contact-1", "first-cw", thread="42"))

    assert [(r.method, r.path) for r in fake_waha.requests] == [("POST", "/api/sendText")]
    assert [r.method for r in fake_chatwoot.requests] == ["POST"]
    assert fake_waha.message_checks() == [] and fake_chatwoot.message_lists() == []


async def test_waha_same_text_already_recorded_for_another_message_is_not_taken(
    db: Database, channels: ChannelActivities, fake_waha: FakeWaha
) -> None:
    """Two replies with one text within the check's window: the one the provider holds belongs
    to the first row, so the second (claimed, never sent) is sent."""
    tid, _ = await make_tenant(db, settings=TenantSettings(waha=fake_waha.settings()))
    first = await send(channels, reply(tid, Channel.WAHA, CHAT, "same-text-1"))
    second = reply(tid, Channel.WAHA, CHAT, "same-text-2")
    await claim_only(db, second)

    result = await send(channels, second)

    assert [m["text"] for m in fake_waha.sent] == [TEXT, TEXT]
    assert len(fake_waha.message_checks()) == 1
    assert result.duplicate is False
    assert result.provider_message_id not in (None, first.provider_message_id)


async def test_waha_same_text_recorded_under_another_id_form_is_still_not_taken(
    db: Database, channels: ChannelActivities, fake_waha: FakeWaha
) -> None:
    """An engine whose sendText answer carries the bare key id (`key.id`, NOWEB) while the list
    gives serialized ids: the other row's id does not match, but it still accounts for the one
    message the provider holds, so this reply is sent rather than lost."""
    tid, _ = await make_tenant(db, settings=TenantSettings(waha=fake_waha.settings()))
    first = await send(channels, reply(tid, Channel.WAHA, CHAT, "id-form-1"))
    assert first.provider_message_id is not None
    bare = first.provider_message_id.split("_")[2]
    async with db.session() as session:
        await outbox_repo.mark_sent(
            session, idempotency_key="id-form-1", delivered_via="waha", provider_message_id=bare
        )
    second = reply(tid, Channel.WAHA, CHAT, "id-form-2")
    await claim_only(db, second)

    result = await send(channels, second)

    assert [m["text"] for m in fake_waha.sent] == [TEXT, TEXT]
    assert result.duplicate is False


async def test_waha_crash_after_an_earlier_send_of_the_same_text_takes_its_own_message(
    db: Database, channels: ChannelActivities, fake_waha: FakeWaha
) -> None:
    settings = TenantSettings(waha=fake_waha.settings())
    tid, _ = await make_tenant(db, settings=settings)
    first = await send(channels, reply(tid, Channel.WAHA, CHAT, "own-1"))
    second = reply(tid, Channel.WAHA, CHAT, "own-2")
    sent_id = await crash_after_send(db, channels, second, settings)

    result = await send(channels, second)

    assert len(fake_waha.sent) == 2
    assert sent_id not in (None, first.provider_message_id)
    assert result == SendResult(provider_message_id=sent_id, delivered_via="waha", duplicate=True)


async def test_waha_older_or_incoming_messages_with_the_text_do_not_count(
    db: Database, channels: ChannelActivities, fake_waha: FakeWaha
) -> None:
    tid, _ = await make_tenant(db, settings=TenantSettings(waha=fake_waha.settings()))
    message = reply(tid, Channel.WAHA, CHAT, "window-waha-old")
    fake_waha.add_message(CHAT, TEXT, timestamp=int(time.time()) - 3600)  # ours, an hour ago
    fake_waha.add_message(CHAT, TEXT, from_me=False)  # the lead quoting us, just now
    fake_waha.add_message("31600000000@c.us", TEXT)  # ours, to someone else
    await claim_only(db, message)

    result = await send(channels, message)

    assert [m["text"] for m in fake_waha.sent] == [TEXT]
    assert result.duplicate is False
    assert len(fake_waha.message_checks()) == 1


async def test_specialist_alert_on_whatsapp_is_checked_too(
    db: Database, channels: ChannelActivities, fake_waha: FakeWaha
) -> None:
    settings = TenantSettings(waha=fake_waha.settings())
    tid, _ = await make_tenant(db, settings=settings)
    request = NotifySpecialistInput(
        tenant_id=tid,
        conversation_id=conversation_workflow_id(tid, "waha", CHAT),
        specialist=Specialist(name="Sanne", role="sales_manager", whatsapp="+31 6 9999 0000"),
        via="whatsapp",
        text=TEXT,
        idempotency_key="esc-window:sanne:whatsapp",
    )
    alert = OutboundMessage(
        tenant_id=tid,
        channel=Channel.WAHA,
        to="+31 6 9999 0000",
        text=TEXT,
        idempotency_key=request.idempotency_key,
        conversation_id=request.conversation_id,
    )
    sent_id = await crash_after_send(db, channels, alert, settings)

    result = await ActivityEnvironment().run(channels.notify_specialist, request)

    assert len(fake_waha.sent) == 1
    assert result.ok and f"as {sent_id}" in result.detail and "already done" in result.detail


# -- Chatwoot --------------------------------------------------------------------------------------


async def test_chatwoot_retry_after_the_crash_records_the_sent_reply(
    db: Database, channels: ChannelActivities, fake_chatwoot: FakeChatwoot
) -> None:
    settings = TenantSettings(chatwoot=fake_chatwoot.settings())
    tid, _ = await make_tenant(db, settings=settings)
    fake_chatwoot.messages.append(  # the lead's message, with the same words, just before
        {
            "id": 7,
            "content": TEXT,
            "conversation_id": 42,
            "message_type": "incoming",
            "private": False,
            "created_at": int(time.time()),
        }
    )
    message = reply(tid, Channel.CHATWOOT, "contact-1", "window-cw", thread="42")
    sent_id = await crash_after_send(db, channels, message, settings)

    result = await send(channels, message)

    assert [m["content"] for m in fake_chatwoot.replies(42) if m["id"] != 7] == [TEXT]
    assert result == SendResult(
        provider_message_id=sent_id, delivered_via="chatwoot", duplicate=True
    )
    [listing] = fake_chatwoot.message_lists()
    assert listing.path == "/api/v1/accounts/1/conversations/42/messages"
    assert listing.headers["api_access_token"] == fake_chatwoot.api_token
    assert (await outbox_row(db, "window-cw")).provider_message_id == sent_id


async def test_chatwoot_private_note_or_older_reply_with_the_text_does_not_count(
    db: Database, channels: ChannelActivities, fake_chatwoot: FakeChatwoot
) -> None:
    settings = TenantSettings(chatwoot=fake_chatwoot.settings())
    tid, _ = await make_tenant(db, settings=settings)
    base = {"content": TEXT, "conversation_id": 42, "message_type": "outgoing"}
    fake_chatwoot.messages += [
        {**base, "id": 1, "private": True, "created_at": int(time.time())},
        {**base, "id": 2, "private": False, "created_at": int(time.time()) - 3600},
    ]
    message = reply(tid, Channel.CHATWOOT, "contact-1", "window-cw-note", thread="42")
    await claim_only(db, message)

    result = await send(channels, message)

    assert result.duplicate is False and result.provider_message_id not in (None, "1", "2")
    assert len([m for m in fake_chatwoot.replies(42) if m["id"] not in (1, 2)]) == 1


async def test_chatwoot_check_that_fails_sends_and_says_so(
    db: Database,
    channels: ChannelActivities,
    fake_chatwoot: FakeChatwoot,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = TenantSettings(chatwoot=fake_chatwoot.settings())
    tid, _ = await make_tenant(db, settings=settings)
    message = reply(tid, Channel.CHATWOOT, "contact-1", "window-cw-429", thread="42")
    await claim_only(db, message)
    fake_chatwoot.fail_next(status=429, retry_after=30)

    with caplog.at_level(logging.INFO, logger=ACTIVITY_LOG):
        result = await send(channels, message)

    assert [m["content"] for m in fake_chatwoot.replies(42)] == [TEXT]
    assert result.duplicate is False
    assert any("HTTP 429" in m and "at-least-once" in m for m in window_messages(caplog))


async def test_chatwoot_check_answer_without_a_payload_list_counts_as_failed(
    db: Database,
    channels: ChannelActivities,
    fake_chatwoot: FakeChatwoot,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = TenantSettings(chatwoot=fake_chatwoot.settings())
    tid, _ = await make_tenant(db, settings=settings)
    message = reply(tid, Channel.CHATWOOT, "contact-1", "window-cw-odd", thread="42")
    await crash_after_send(db, channels, message, settings)
    fake_chatwoot.failures.add(1, status=200, body={"meta": {}, "payload": {"id": 1}})

    with caplog.at_level(logging.INFO, logger=ACTIVITY_LOG):
        result = await send(channels, message)

    assert len(fake_chatwoot.replies(42)) == 2 and result.duplicate is False
    assert any("no payload list" in m and "at-least-once" in m for m in window_messages(caplog))


# -- channels without a check ----------------------------------------------------------------------


async def test_meta_whatsapp_has_no_check_and_sends_again(
    db: Database, channels: ChannelActivities, fake_meta: FakeMeta, caplog: pytest.LogCaptureFixture
) -> None:
    settings = TenantSettings(whatsapp=fake_meta.whatsapp_settings())
    tid, _ = await make_tenant(db, settings=settings)
    message = reply(tid, Channel.WHATSAPP, "31612345678", "window-meta")
    await crash_after_send(db, channels, message, settings)

    with caplog.at_level(logging.INFO, logger=ACTIVITY_LOG):
        result = await send(channels, message)

    assert len(fake_meta.whatsapp_sent) == 2  # at-least-once: Graph API cannot say
    assert result.duplicate is False
    assert all(r.method == "POST" for r in fake_meta.requests)
    assert any("cannot tell" in m and "at-least-once" in m for m in window_messages(caplog))


async def test_smtp_resend_carries_the_same_message_id(
    db: Database, channels: ChannelActivities, smtp_server: SmtpServer
) -> None:
    """SMTP cannot say what was delivered; the retry's mail has the first one's Message-ID, so a
    receiving side that de-duplicates on it shows one mail."""
    settings = TenantSettings(smtp=smtp_server.settings())
    tid, _ = await make_tenant(db, settings=settings)
    message = reply(tid, Channel.EMAIL, "jan@example.com", "window-mail", thread="Golf price")
    first_id = await crash_after_send(db, channels, message, settings)

    result = await send(channels, message)

    ids = [m.message["Message-ID"] for m in smtp_server.messages]
    assert ids == [first_id, first_id]
    assert result.provider_message_id == first_id and result.duplicate is False
