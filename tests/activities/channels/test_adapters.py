"""Each channel adapter against its wire-level fake: exact request, auth, and error mapping."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.channels.base import (
    CHANNEL_NOT_CONFIGURED,
    CHANNEL_REJECTED,
    CHANNEL_UNAVAILABLE,
    MAX_RETRY_AFTER,
    parse_retry_after,
)
from activities.channels.chatwoot import ChatwootChannel
from activities.channels.meta import MessengerChannel, MetaWhatsAppChannel
from activities.channels.smtp import SmtpChannel
from activities.channels.waha import WahaChannel, normalise_chat_id
from models.common import Channel
from models.messages import OutboundMessage
from models.tenant import ChatwootSettings, TenantSettings, WahaSettings
from tests.fakes.chatwoot import FakeChatwoot
from tests.fakes.fixtures import *  # noqa: F403
from tests.fakes.meta import FakeMeta
from tests.fakes.smtp import SmtpServer
from tests.fakes.waha import FakeWaha


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


def outbound(channel: Channel, to: str, **kw: object) -> OutboundMessage:
    values: dict[str, object] = {
        "tenant_id": "acme",
        "channel": channel,
        "to": to,
        "text": "Hi Jan, the Golf is available for a test drive on Saturday.",
        "idempotency_key": "conv:acme:1:turn-1",
    }
    values.update(kw)
    return OutboundMessage.model_validate(values)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_permanent(error: ApplicationError, type_: str = CHANNEL_REJECTED) -> None:
    assert error.type == type_
    assert error.non_retryable is True


def assert_transient(error: ApplicationError, delay: timedelta | None = None) -> None:
    assert error.type == CHANNEL_UNAVAILABLE
    assert error.non_retryable is False
    assert error.next_retry_delay == delay


# -- retry-after parsing ---------------------------------------------------------------------------


def test_retry_after_accepts_seconds_and_http_dates_and_is_capped() -> None:
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("7", now=now) == timedelta(seconds=7)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(later, now=now) == timedelta(seconds=90)
    past = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(past, now=now) == timedelta(0)
    assert parse_retry_after("86400", now=now) == MAX_RETRY_AFTER
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None) is None


# -- WAHA ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("contact", "chat_id"),
    [
        ("31612345678@c.us", "31612345678@c.us"),
        ("+31 6 1234 5678", "31612345678@c.us"),
        ("0031612345678", "31612345678@c.us"),
        ("31612345678@s.whatsapp.net", "31612345678@c.us"),
        ("12312312123133@g.us", "12312312123133@g.us"),
        ("123123123@lid", "123123123@lid"),
    ],
)
def test_waha_chat_id_normalisation(contact: str, chat_id: str) -> None:
    assert normalise_chat_id(contact) == chat_id


@pytest.mark.parametrize("contact", ["hello", "123", "someone@example.com", "1234567890123456"])
def test_waha_refuses_what_is_no_chat_id(contact: str) -> None:
    with pytest.raises(ApplicationError) as caught:
        normalise_chat_id(contact)
    assert_permanent(caught.value)


async def test_waha_posts_send_text_with_api_key(
    fake_waha: FakeWaha, http: httpx.AsyncClient
) -> None:
    settings = TenantSettings(waha=fake_waha.settings())
    message = outbound(Channel.WAHA, "+31 6 1234 5678")

    provider_id = await WahaChannel(http).send(message, settings)

    [request] = fake_waha.requests
    assert request.method == "POST" and request.path == "/api/sendText"
    assert request.headers["x-api-key"] == fake_waha.api_key
    assert request.json == {
        "session": "default",
        "chatId": "31612345678@c.us",
        "text": message.text,
    }
    assert provider_id is not None and provider_id.startswith("true_31612345678@c.us_")


async def test_waha_reads_the_webjs_message_id_object(http: httpx.AsyncClient) -> None:
    with FakeWaha(id_style="webjs", session="sales") as waha:
        settings = TenantSettings(waha=waha.settings())
        provider_id = await WahaChannel(http).send(
            outbound(Channel.WAHA, "31612345678@c.us"), settings
        )
        assert waha.requests[0].json["session"] == "sales"
    assert provider_id is not None and provider_id.startswith("true_31612345678@c.us_")


async def test_waha_wrong_key_is_permanent(fake_waha: FakeWaha, http: httpx.AsyncClient) -> None:
    settings = TenantSettings(waha=fake_waha.settings(api_key="wrong"))
    with pytest.raises(ApplicationError) as caught:
        await WahaChannel(http).send(outbound(Channel.WAHA, "31612345678"), settings)
    assert_permanent(caught.value)
    assert "401" in str(caught.value)
    assert fake_waha.sent == []


async def test_waha_without_api_key_is_not_configured(
    fake_waha: FakeWaha, http: httpx.AsyncClient
) -> None:
    settings = TenantSettings(waha=fake_waha.settings(api_key=None))
    with pytest.raises(ApplicationError) as caught:
        await WahaChannel(http).send(outbound(Channel.WAHA, "31612345678"), settings)
    assert_permanent(caught.value, CHANNEL_NOT_CONFIGURED)
    assert fake_waha.requests == []


async def test_waha_429_with_retry_after_is_retryable_with_that_delay(
    fake_waha: FakeWaha, http: httpx.AsyncClient
) -> None:
    fake_waha.fail_next(status=429, retry_after=7)
    settings = TenantSettings(waha=fake_waha.settings())
    with pytest.raises(ApplicationError) as caught:
        await WahaChannel(http).send(outbound(Channel.WAHA, "31612345678"), settings)
    assert_transient(caught.value, timedelta(seconds=7))
    # The failure was one-off: the next attempt goes through.
    assert await WahaChannel(http).send(outbound(Channel.WAHA, "31612345678"), settings)
    assert len(fake_waha.sent) == 1


async def test_waha_500_and_network_errors_are_retryable(
    fake_waha: FakeWaha, http: httpx.AsyncClient
) -> None:
    fake_waha.fail_next(status=500)
    settings = TenantSettings(waha=fake_waha.settings())
    with pytest.raises(ApplicationError) as caught:
        await WahaChannel(http).send(outbound(Channel.WAHA, "31612345678"), settings)
    assert_transient(caught.value)

    down = TenantSettings(
        waha=WahaSettings(base_url=f"http://127.0.0.1:{closed_port()}", api_key="k")
    )
    with pytest.raises(ApplicationError) as caught:
        await WahaChannel(http).send(outbound(Channel.WAHA, "31612345678"), down)
    assert_transient(caught.value)
    assert "ConnectError" in str(caught.value)


# -- Meta WhatsApp Cloud API -----------------------------------------------------------------------


async def test_whatsapp_cloud_posts_text_message_with_bearer_token(
    fake_meta: FakeMeta, http: httpx.AsyncClient
) -> None:
    settings = TenantSettings(whatsapp=fake_meta.whatsapp_settings())
    message = outbound(Channel.WHATSAPP, "+31 6 1234 5678")

    provider_id = await MetaWhatsAppChannel(http).send(message, settings)

    [request] = fake_meta.requests
    assert request.path == f"/v21.0/{fake_meta.phone_number_id}/messages"
    assert request.headers["authorization"] == f"Bearer {fake_meta.access_token}"
    assert "access_token" not in request.query  # the token never travels in the URL
    assert request.json == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "31612345678",
        "type": "text",
        "text": {"preview_url": False, "body": message.text},
    }
    assert provider_id is not None and provider_id.startswith("wamid.")


async def test_whatsapp_cloud_accepts_a_waha_style_chat_id(
    fake_meta: FakeMeta, http: httpx.AsyncClient
) -> None:
    settings = TenantSettings(whatsapp=fake_meta.whatsapp_settings())
    await MetaWhatsAppChannel(http).send(outbound(Channel.WHATSAPP, "31612345678@c.us"), settings)
    assert fake_meta.whatsapp_sent[0]["to"] == "31612345678"


async def test_whatsapp_cloud_bad_token_and_unknown_number_are_permanent(
    fake_meta: FakeMeta, http: httpx.AsyncClient
) -> None:
    channel = MetaWhatsAppChannel(http)
    bad_token = TenantSettings(whatsapp=fake_meta.whatsapp_settings(access_token="nope"))
    with pytest.raises(ApplicationError) as caught:
        await channel.send(outbound(Channel.WHATSAPP, "31612345678"), bad_token)
    assert_permanent(caught.value)
    assert "OAuthException" in str(caught.value)

    bad_number = TenantSettings(whatsapp=fake_meta.whatsapp_settings(phone_number_id="999"))
    with pytest.raises(ApplicationError) as caught:
        await channel.send(outbound(Channel.WHATSAPP, "31612345678"), bad_number)
    assert_permanent(caught.value)
    assert fake_meta.whatsapp_sent == []


async def test_whatsapp_cloud_missing_phone_number_id_is_not_configured(
    fake_meta: FakeMeta, http: httpx.AsyncClient
) -> None:
    settings = TenantSettings(whatsapp=fake_meta.whatsapp_settings(phone_number_id=None))
    with pytest.raises(ApplicationError) as caught:
        await MetaWhatsAppChannel(http).send(outbound(Channel.WHATSAPP, "31612345678"), settings)
    assert_permanent(caught.value, CHANNEL_NOT_CONFIGURED)
    assert fake_meta.requests == []


async def test_whatsapp_cloud_throttling_is_retryable_even_as_http_400(
    fake_meta: FakeMeta, http: httpx.AsyncClient
) -> None:
    settings = TenantSettings(whatsapp=fake_meta.whatsapp_settings())
    fake_meta.fail_next(status=400, code=130429, message="(#130429) Rate limit hit")
    with pytest.raises(ApplicationError) as caught:
        await MetaWhatsAppChannel(http).send(outbound(Channel.WHATSAPP, "31612345678"), settings)
    assert_transient(caught.value)

    fake_meta.fail_next(status=429, code=4, retry_after=30)
    with pytest.raises(ApplicationError) as caught:
        await MetaWhatsAppChannel(http).send(outbound(Channel.WHATSAPP, "31612345678"), settings)
    assert_transient(caught.value, timedelta(seconds=30))

    fake_meta.fail_next(status=500, code=2)
    with pytest.raises(ApplicationError) as caught:
        await MetaWhatsAppChannel(http).send(outbound(Channel.WHATSAPP, "31612345678"), settings)
    assert_transient(caught.value)
    assert fake_meta.whatsapp_sent == []


# -- Messenger -------------------------------------------------------------------------------------


async def test_messenger_posts_response_to_psid_with_page_token(
    fake_meta: FakeMeta, http: httpx.AsyncClient
) -> None:
    settings = TenantSettings(messenger=fake_meta.messenger_settings())
    message = outbound(Channel.MESSENGER, "1254459154682919")

    provider_id = await MessengerChannel(http).send(message, settings)

    [request] = fake_meta.requests
    assert request.path == "/v21.0/me/messages"
    assert request.headers["authorization"] == f"Bearer {fake_meta.page_access_token}"
    assert request.json == {
        "recipient": {"id": "1254459154682919"},
        "messaging_type": "RESPONSE",
        "message": {"text": message.text},
    }
    assert provider_id is not None and provider_id.startswith("m_")


async def test_messenger_wrong_token_missing_token_and_bad_psid_are_permanent(
    fake_meta: FakeMeta, http: httpx.AsyncClient
) -> None:
    channel = MessengerChannel(http)
    wrong = TenantSettings(messenger=fake_meta.messenger_settings(page_access_token="x"))
    with pytest.raises(ApplicationError) as caught:
        await channel.send(outbound(Channel.MESSENGER, "1254459154682919"), wrong)
    assert_permanent(caught.value)

    missing = TenantSettings(messenger=fake_meta.messenger_settings(page_access_token=None))
    with pytest.raises(ApplicationError) as caught:
        await channel.send(outbound(Channel.MESSENGER, "1254459154682919"), missing)
    assert_permanent(caught.value, CHANNEL_NOT_CONFIGURED)

    good = TenantSettings(messenger=fake_meta.messenger_settings())
    with pytest.raises(ApplicationError) as caught:
        await channel.send(outbound(Channel.MESSENGER, "jan@example.com"), good)
    assert_permanent(caught.value)
    assert len(fake_meta.requests) == 1  # only the wrong-token call reached Meta
    assert fake_meta.messenger_sent == []


# -- Chatwoot --------------------------------------------------------------------------------------


async def test_chatwoot_reply_goes_to_the_thread_conversation(
    fake_chatwoot: FakeChatwoot, http: httpx.AsyncClient
) -> None:
    settings = TenantSettings(chatwoot=fake_chatwoot.settings(account_id=3))
    fake_chatwoot.account_id = 3
    message = outbound(Channel.CHATWOOT, "contact-14", thread="42")

    provider_id = await ChatwootChannel(http).send(message, settings)

    [request] = fake_chatwoot.requests
    assert request.path == "/api/v1/accounts/3/conversations/42/messages"
    assert request.headers["api_access_token"] == fake_chatwoot.api_token
    assert request.json == {
        "content": message.text,
        "message_type": "outgoing",
        "private": False,
        "content_type": "text",
    }
    [reply] = fake_chatwoot.replies(42)
    assert provider_id == str(reply["id"])
    assert fake_chatwoot.private_notes() == []


async def test_chatwoot_private_note_and_assignment(
    fake_chatwoot: FakeChatwoot, http: httpx.AsyncClient
) -> None:
    settings = TenantSettings(chatwoot=fake_chatwoot.settings())
    channel = ChatwootChannel(http)

    await channel.assign("42", 7, settings=settings)
    note_id = await channel.private_note(42, "Hot lead wants a test drive", settings=settings)

    assert fake_chatwoot.assignments == [{"conversation_id": 42, "assignee_id": 7}]
    [note] = fake_chatwoot.private_notes(42)
    assert note["content"] == "Hot lead wants a test drive"
    assert note_id == str(note["id"])
    assign_request = fake_chatwoot.requests[0]
    assert assign_request.path == "/api/v1/accounts/1/conversations/42/assignments"
    assert assign_request.json == {"assignee_id": 7}
    assert fake_chatwoot.requests[1].json["private"] is True
    assert fake_chatwoot.replies() == []


async def test_chatwoot_without_conversation_id_token_or_with_bad_token_is_permanent(
    fake_chatwoot: FakeChatwoot, http: httpx.AsyncClient
) -> None:
    channel = ChatwootChannel(http)
    settings = TenantSettings(chatwoot=fake_chatwoot.settings())
    with pytest.raises(ApplicationError) as caught:
        await channel.send(outbound(Channel.CHATWOOT, "c", thread=None), settings)
    assert_permanent(caught.value)

    no_token = TenantSettings(chatwoot=ChatwootSettings(base_url=fake_chatwoot.url))
    with pytest.raises(ApplicationError) as caught:
        await channel.send(outbound(Channel.CHATWOOT, "c", thread="42"), no_token)
    assert_permanent(caught.value, CHANNEL_NOT_CONFIGURED)
    assert fake_chatwoot.requests == []

    bad = TenantSettings(chatwoot=fake_chatwoot.settings(api_token="wrong"))
    with pytest.raises(ApplicationError) as caught:
        await channel.send(outbound(Channel.CHATWOOT, "c", thread="42"), bad)
    assert_permanent(caught.value)
    assert "401" in str(caught.value)

    fake_chatwoot.missing_conversations.add(404404)
    with pytest.raises(ApplicationError) as caught:
        await channel.send(outbound(Channel.CHATWOOT, "c", thread="404404"), settings)
    assert_permanent(caught.value)
    assert fake_chatwoot.messages == []


async def test_chatwoot_429_and_500_are_retryable(
    fake_chatwoot: FakeChatwoot, http: httpx.AsyncClient
) -> None:
    channel = ChatwootChannel(http)
    settings = TenantSettings(chatwoot=fake_chatwoot.settings())
    fake_chatwoot.fail_next(1, status=429, retry_after=3, path_contains="/assignments")
    fake_chatwoot.fail_next(1, status=500)

    # The 429 is reserved for assignments, so the message call gets the 500.
    with pytest.raises(ApplicationError) as caught:
        await channel.send(outbound(Channel.CHATWOOT, "c", thread="42"), settings)
    assert_transient(caught.value)
    with pytest.raises(ApplicationError) as caught:
        await channel.assign(42, 7, settings=settings)
    assert_transient(caught.value, timedelta(seconds=3))

    await channel.send(outbound(Channel.CHATWOOT, "c", thread="42"), settings)
    await channel.assign(42, 7, settings=settings)
    assert len(fake_chatwoot.replies(42)) == 1
    assert len(fake_chatwoot.assignments) == 1


# -- SMTP ------------------------------------------------------------------------------------------


async def test_smtp_sends_a_new_message_with_proper_headers(smtp_server: SmtpServer) -> None:
    settings = TenantSettings(smtp=smtp_server.settings())
    message = outbound(Channel.EMAIL, "jan@example.com", subject="Your Golf")

    provider_id = await SmtpChannel().send(message, settings)

    [mail] = smtp_server.messages
    assert mail.mail_from == "sales@dealer.example"
    assert mail.rcpt_tos == ("jan@example.com",)
    headers = mail.message
    assert headers["From"] == "Sales <sales@dealer.example>"
    assert headers["To"] == "jan@example.com"
    assert headers["Subject"] == "Your Golf"
    assert headers["Message-ID"] == provider_id
    assert provider_id is not None and provider_id.endswith("@dealer.example>")
    assert headers["In-Reply-To"] is None and headers["Date"] is not None
    assert headers.get_content().strip() == message.text


async def test_smtp_replies_in_the_leads_thread(smtp_server: SmtpServer) -> None:
    settings = TenantSettings(smtp=smtp_server.settings())
    channel = SmtpChannel()
    lead_message_id = "<CAFxyz123@mail.example.com>"

    await channel.send(
        outbound(
            Channel.EMAIL,
            "Jan <jan@example.com>",
            thread=lead_message_id,
            subject="Price of the Golf?",
            idempotency_key="k1",
        ),
        settings,
    )
    await channel.send(
        outbound(
            Channel.EMAIL, "jan@example.com", thread="Price of the Golf?", idempotency_key="k2"
        ),
        settings,
    )
    await channel.send(
        outbound(Channel.EMAIL, "jan@example.com", thread="RE: Golf", idempotency_key="k3"),
        settings,
    )

    by_reference, by_subject, already_reply = (m.message for m in smtp_server.messages)
    assert by_reference["Subject"] == "Re: Price of the Golf?"
    assert by_reference["In-Reply-To"] == lead_message_id
    assert by_reference["References"] == lead_message_id
    assert smtp_server.messages[0].rcpt_tos == ("jan@example.com",)
    assert by_subject["Subject"] == "Re: Price of the Golf?"
    assert by_subject["In-Reply-To"] is None
    assert already_reply["Subject"] == "RE: Golf"


async def test_smtp_message_id_is_stable_per_idempotency_key(smtp_server: SmtpServer) -> None:
    settings = TenantSettings(smtp=smtp_server.settings())
    first = await SmtpChannel().send(outbound(Channel.EMAIL, "a@example.com"), settings)
    again = await SmtpChannel().send(outbound(Channel.EMAIL, "a@example.com"), settings)
    other = await SmtpChannel().send(
        outbound(Channel.EMAIL, "a@example.com", idempotency_key="another"), settings
    )
    assert first == again != other


async def test_smtp_logs_in_when_a_username_is_set() -> None:
    with SmtpServer(username="sales", password="s3cret") as smtp:
        await SmtpChannel().send(
            outbound(Channel.EMAIL, "jan@example.com"), TenantSettings(smtp=smtp.settings())
        )
        assert smtp.messages[0].authenticated_as == "sales"

        wrong = TenantSettings(smtp=smtp.settings(password="nope"))
        with pytest.raises(ApplicationError) as caught:
            await SmtpChannel().send(outbound(Channel.EMAIL, "jan@example.com"), wrong)
        assert_permanent(caught.value)
        assert "535" in str(caught.value)
        assert len(smtp.messages) == 1


async def test_smtp_refused_recipient_is_permanent_and_451_is_retryable(
    smtp_server: SmtpServer,
) -> None:
    settings = TenantSettings(smtp=smtp_server.settings())
    smtp_server.reject_recipients.add("gone@example.com")
    with pytest.raises(ApplicationError) as caught:
        await SmtpChannel().send(outbound(Channel.EMAIL, "gone@example.com"), settings)
    assert_permanent(caught.value)
    assert "550" in str(caught.value)

    smtp_server.fail_data(1)
    with pytest.raises(ApplicationError) as caught:
        await SmtpChannel().send(outbound(Channel.EMAIL, "jan@example.com"), settings)
    assert_transient(caught.value)
    assert "451" in str(caught.value)

    await SmtpChannel().send(outbound(Channel.EMAIL, "jan@example.com"), settings)
    assert [m.rcpt_tos for m in smtp_server.messages] == [("jan@example.com",)]


async def test_smtp_unreachable_server_is_retryable_and_bad_address_permanent() -> None:
    from models.tenant import SmtpSettings

    down = TenantSettings(smtp=SmtpSettings(host="127.0.0.1", port=closed_port()))
    with pytest.raises(ApplicationError) as caught:
        await SmtpChannel().send(outbound(Channel.EMAIL, "jan@example.com"), down)
    assert_transient(caught.value)

    with pytest.raises(ApplicationError) as caught:
        await SmtpChannel().send(outbound(Channel.EMAIL, "not an address"), down)
    assert_permanent(caught.value)
