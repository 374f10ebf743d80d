"""The pure parsers on their own: edge cases that need no app or Temporal."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from api.webhooks.parsers.chatwoot import parse_chatwoot
from api.webhooks.parsers.email import parse_date, parse_email
from api.webhooks.parsers.meta import parse_messenger, parse_whatsapp
from api.webhooks.parsers.postmark import parse_postmark
from api.webhooks.parsers.waha import normalise_chat_id, parse_waha
from models.common import Role
from models.webhooks import WebhookPayloadError
from tests.api.webhooks.conftest import payload, payload_json

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def test_waha_noweb_jid_and_push_name() -> None:
    doc = payload_json("waha_message.json")
    doc["payload"]["from"] = "5511999999999@s.whatsapp.net"
    doc["payload"]["_data"] = {"pushName": "Ana"}
    (msg,) = parse_waha(json.dumps(doc).encode(), tenant_id="t").messages
    assert msg.contact == "5511999999999@c.us"
    assert msg.contact_name == "Ana"
    assert normalise_chat_id("1@lid") == "1@lid"


def test_waha_message_any_from_lead_is_a_message_and_broadcasts_are_not() -> None:
    doc = payload_json("waha_message.json")
    doc["event"] = "message.any"
    assert len(parse_waha(json.dumps(doc).encode(), tenant_id="t").messages) == 1
    doc["payload"]["from"] = "status@broadcast"
    parsed = parse_waha(json.dumps(doc).encode(), tenant_id="t")
    assert parsed.messages == ()
    assert "broadcast" in parsed.ignored[0]


def test_waha_message_without_payload_is_malformed() -> None:
    with pytest.raises(WebhookPayloadError, match="payload: an object is required"):
        parse_waha(b'{"event": "message"}', tenant_id="t")


def test_whatsapp_batch_mixes_messages_and_statuses() -> None:
    doc = payload_json("whatsapp_text.json")
    status = payload_json("whatsapp_status_delivered.json")["entry"][0]["changes"][0]
    doc["entry"][0]["changes"].append(status)
    value = doc["entry"][0]["changes"][0]["value"]
    value["messages"].append(
        {
            "from": "16505551234",
            "id": "wamid.2",
            "timestamp": "1749416390",
            "type": "interactive",
            "interactive": {"type": "button_reply", "button_reply": {"id": "b1", "title": "Yes"}},
        }
    )
    value["messages"].append(
        {"from": "16505551234", "id": "wamid.3", "timestamp": "1749416391", "type": "reaction"}
    )
    parsed = parse_whatsapp(json.dumps(doc).encode(), tenant_id="t")
    assert [m.text for m in parsed.messages] == ["Does it come in another color?", "Yes"]
    assert parsed.ignored == (
        "WhatsApp message wamid.3: type 'reaction' carries no text",
        "WhatsApp status 'delivered' for wamid.xyzxyz: a receipt, not a message",
    )


def test_whatsapp_image_uses_caption() -> None:
    doc = payload_json("whatsapp_text.json")
    msg = doc["entry"][0]["changes"][0]["value"]["messages"][0]
    del msg["text"]
    msg.update(type="image", image={"id": "media-1", "caption": "this one", "mime_type": "x"})
    (parsed,) = parse_whatsapp(json.dumps(doc).encode(), tenant_id="t").messages
    assert parsed.text == "this one"


def test_messenger_attachment_and_postback() -> None:
    doc = payload_json("messenger_text.json")
    event = doc["entry"][0]["messaging"][0]
    event["message"] = {
        "mid": "m_1",
        "attachments": [{"type": "image", "payload": {"url": "https://cdn.example/x.jpg"}}],
    }
    postback = {
        "sender": {"id": "USER_ID"},
        "recipient": {"id": "PAGE_ID"},
        "timestamp": 1457764197700,
        "postback": {"mid": "m_2", "title": "Book a test drive", "payload": "BOOK"},
    }
    doc["entry"][0]["messaging"].append(postback)
    first, second = parse_messenger(json.dumps(doc).encode(), tenant_id="t").messages
    assert (first.text, first.media_urls) == ("[image]", ("https://cdn.example/x.jpg",))
    assert (second.provider_message_id, second.text) == ("m_2", "Book a test drive")


def test_messenger_wrong_object() -> None:
    with pytest.raises(WebhookPayloadError, match="expected 'page'"):
        parse_messenger(payload("whatsapp_text.json"), tenant_id="t")


def test_chatwoot_numeric_message_type_and_unix_created_at() -> None:
    doc = payload_json("chatwoot_message_created.json")
    doc.update(message_type=0, created_at=1627063369)
    (msg,) = parse_chatwoot(json.dumps(doc).encode(), tenant_id="t").messages
    assert msg.role is Role.LEAD
    assert msg.sent_at == datetime(2021, 7, 23, 18, 2, 49, tzinfo=UTC)


def test_chatwoot_attachment_only_message() -> None:
    doc = payload_json("chatwoot_message_created.json")
    doc.update(content=None, attachments=[{"file_type": "image", "data_url": "https://x/y.png"}])
    (msg,) = parse_chatwoot(json.dumps(doc).encode(), tenant_id="t").messages
    assert (msg.text, msg.media_urls) == ("[image]", ("https://x/y.png",))


def test_chatwoot_conversation_without_contact_is_malformed() -> None:
    doc = payload_json("chatwoot_conversation_status_changed.json")
    del doc["contact_inbox"]
    del doc["meta"]
    with pytest.raises(WebhookPayloadError, match="contact_id"):
        parse_chatwoot(json.dumps(doc).encode(), tenant_id="t")


def test_email_dates_and_defaults() -> None:
    assert parse_date("2025-06-10T07:15:00") == datetime(2025, 6, 10, 7, 15, tzinfo=UTC)
    assert parse_date("2025-06-10T09:15:00+02:00") == datetime(2025, 6, 10, 7, 15, tzinfo=UTC)
    body = json.dumps(
        {"from": "lead@example.com", "to": "sales@x.example", "text": "hi", "message_id": "<1@x>"}
    ).encode()
    email = parse_email(body)
    assert (email.date, email.from_name, email.message_id) == (None, None, "<1@x>")


def test_invalid_json_and_non_utf8() -> None:
    parsers: list[Callable[[bytes], object]] = [
        lambda b: parse_waha(b, tenant_id="t"),
        lambda b: parse_whatsapp(b, tenant_id="t"),
        lambda b: parse_chatwoot(b, tenant_id="t"),
        parse_email,
        parse_postmark,
    ]
    for parse in parsers:
        for body in (b"", b"\xff\xfe{", b"{'single': 'quotes'}"):
            with pytest.raises(WebhookPayloadError, match="not valid JSON"):
                parse(body)
