"""Campaign mail's headers (activities/channels/smtp.py `campaign_headers`): List-Unsubscribe
with one-click List-Unsubscribe-Post and Auto-Submitted, exact values, written on one line
(never RFC 2047 encoded words, which no client reads as a URL), through a real SMTP server;
mail that is not a campaign's is sent exactly as before."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtplib.email import flatten_message
from temporalio.exceptions import ApplicationError

from activities.channels.base import CHANNEL_REJECTED
from activities.channels.smtp import AUTO_SUBMITTED, SmtpChannel, build_email, campaign_headers
from models.common import Channel
from models.messages import OutboundMessage
from models.tenant import SmtpSettings, TenantSettings
from models.unsubscribe import Unsubscribe, UnsubscribeLinks, make_token, read_token
from tests.fakes.smtp import SmtpServer

KEY = "smtp-unsubscribe-test-key"
HTTPS = UnsubscribeLinks(base_url="https://leadflow.example.com", secret_key=KEY)
SMTP = SmtpSettings(host="127.0.0.1", port=25, from_address="Sales <sales@dealer.example>")
UNSUBSCRIBE_HEADERS = ("Auto-Submitted", "List-Unsubscribe", "List-Unsubscribe-Post")


def _message(*, campaign_id: str | None = "cmp-42", **overrides: object) -> OutboundMessage:
    values: dict[str, object] = {
        "tenant_id": "t-dealer",
        "channel": Channel.EMAIL,
        "to": "Ana.Lima@Example.com",
        "text": "Hello Ana, the Golf you asked about is in stock.",
        "idempotency_key": "conv:t-dealer:email:x:outreach",
        "subject": "Your Volkswagen Golf",
        "campaign_id": campaign_id,
    }
    values.update(overrides)
    return OutboundMessage.model_validate(values)


def _wire(email: EmailMessage) -> tuple[bytes, EmailMessage]:
    """What aiosmtplib puts on the wire (its own flattening, `policy.SMTP`), and that parsed."""
    raw = flatten_message(email)
    parsed = message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return raw, parsed


def test_campaign_mail_carries_one_click_list_unsubscribe() -> None:
    token = make_token(KEY, Unsubscribe("t-dealer", "ana.lima@example.com", "cmp-42"))
    email = build_email(_message(), SMTP, HTTPS)
    raw, parsed = _wire(email)
    url = f"https://leadflow.example.com/unsubscribe/{token}"
    assert parsed["List-Unsubscribe"] == f"<{url}>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["Auto-Submitted"] == "auto-generated"
    # On one line each, as written: no folding inside the URL, no encoded words.
    lines = raw.split(b"\r\n")
    assert f"List-Unsubscribe: <{url}>".encode() in lines
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in lines
    assert b"Auto-Submitted: auto-generated" in lines
    assert b"=?" not in raw.split(b"\r\n\r\n", 1)[0]
    # The token names the recipient as the conversation does (lowercase) and the campaign.
    assert read_token(KEY, url.rsplit("/", 1)[1]) == Unsubscribe(
        "t-dealer", "ana.lima@example.com", "cmp-42"
    )


def test_the_other_headers_are_as_for_any_mail() -> None:
    campaign = build_email(_message(), SMTP, HTTPS)
    plain = build_email(_message(campaign_id=None), SMTP, HTTPS)
    names = [name for name in campaign.keys() if name not in UNSUBSCRIBE_HEADERS]
    assert names == plain.keys()
    for name in names:
        if name != "Date":
            assert campaign[name] == plain[name], name
    assert campaign.get_content() == plain.get_content()


def test_mail_that_is_no_campaigns_is_unchanged() -> None:
    for links in (HTTPS, None):
        email = build_email(_message(campaign_id=None), SMTP, links)
        raw, _ = _wire(email)
        assert not set(UNSUBSCRIBE_HEADERS) & set(email.keys())
        assert b"Unsubscribe" not in raw and b"Auto-Submitted" not in raw


def test_a_reply_in_the_leads_thread_keeps_its_threading_and_the_link() -> None:
    email = build_email(_message(thread="<abc123@mail.example.com>"), SMTP, HTTPS)
    _, parsed = _wire(email)
    assert parsed["In-Reply-To"] == "<abc123@mail.example.com>"
    assert parsed["Subject"] == "Re: Your Volkswagen Golf"
    assert parsed["List-Unsubscribe"].startswith("<https://leadflow.example.com/unsubscribe/")
    assert parsed["Auto-Submitted"] == AUTO_SUBMITTED


def test_a_long_subject_is_still_folded_and_the_link_never() -> None:
    subject = "Your Volkswagen Golf" + " with every option you asked about" * 4
    email = build_email(_message(subject=subject), SMTP, HTTPS)
    raw, parsed = _wire(email)
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    assert parsed["Subject"] == subject
    subject_line = next(line for line in head.split("\r\n") if line.startswith("Subject:"))
    assert len(subject_line) <= 78  # folded as before
    link_line = next(line for line in head.split("\r\n") if line.startswith("List-Unsubscribe:"))
    assert len(link_line) > 78 and link_line.endswith(">")


def test_http_outside_loopback_is_a_link_without_one_click() -> None:
    links = UnsubscribeLinks(base_url="http://leadflow.example.com", secret_key=KEY)
    _, parsed = _wire(build_email(_message(), SMTP, links))
    assert parsed["List-Unsubscribe"].startswith("<http://leadflow.example.com/unsubscribe/")
    assert parsed["List-Unsubscribe-Post"] is None
    loopback = UnsubscribeLinks(base_url="http://127.0.0.1:8000", secret_key=KEY)
    _, parsed = _wire(build_email(_message(), SMTP, loopback))
    assert parsed["List-Unsubscribe"].startswith("<http://127.0.0.1:8000/unsubscribe/")
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_without_links_campaign_mail_is_marked_automatic_only() -> None:
    assert campaign_headers(_message(), "ana.lima@example.com", None) == [
        ("Auto-Submitted", "auto-generated")
    ]
    email = build_email(_message(), SMTP)  # SmtpChannel(): no link it could not vouch for
    assert email["List-Unsubscribe"] is None and email["Auto-Submitted"] == "auto-generated"


def test_a_link_too_long_for_a_header_line_refuses_the_send() -> None:
    links = UnsubscribeLinks(base_url="https://example.com/" + "p" * 900, secret_key=KEY)
    with pytest.raises(ApplicationError, match="LEADFLOW_PUBLIC_URL") as refused:
        build_email(_message(), SMTP, links)
    assert refused.value.type == CHANNEL_REJECTED and refused.value.non_retryable


def test_the_plugin_factory_links_to_the_process_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from models.settings import get_settings

    monkeypatch.setenv("LEADFLOW_PUBLIC_URL", "https://crm.dealer.example")
    monkeypatch.setenv("LEADFLOW_SECRET_KEY", KEY)
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        channel = SmtpChannel.for_worker(None)  # type: ignore[arg-type]  # the http client: unused
    finally:
        get_settings.cache_clear()
    assert channel.unsubscribe is not None
    assert channel.unsubscribe.base_url == "https://crm.dealer.example"
    url = channel.unsubscribe.url(Unsubscribe("t", "a@example.com", "c"))
    assert read_token(KEY, url.rsplit("/", 1)[1]) == Unsubscribe("t", "a@example.com", "c")
    monkeypatch.setenv("LEADFLOW_PUBLIC_URL", "not a url")
    try:
        with pytest.raises(ValueError, match="LEADFLOW_PUBLIC_URL"):
            SmtpChannel.for_worker(None)  # type: ignore[arg-type]
    finally:
        get_settings.cache_clear()


async def test_the_headers_reach_a_real_smtp_server(smtp_server: SmtpServer) -> None:
    settings = TenantSettings(smtp=smtp_server.settings())
    channel = SmtpChannel(HTTPS)
    await channel.send(_message(to="ana.lima@example.com"), settings)
    await channel.send(_message(to="jan@example.com", campaign_id=None), settings)
    campaign, plain = (m.message for m in smtp_server.messages)
    token = make_token(KEY, Unsubscribe("t-dealer", "ana.lima@example.com", "cmp-42"))
    assert campaign["List-Unsubscribe"] == f"<https://leadflow.example.com/unsubscribe/{token}>"
    assert campaign["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert campaign["Auto-Submitted"] == "auto-generated"
    assert not set(UNSUBSCRIBE_HEADERS) & set(plain.keys())
