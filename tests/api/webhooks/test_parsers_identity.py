"""Parsers emit one id per person: normalised contacts, WAHA's stable message key, the phone of a
WAHA @lid sender from the engine's `_data`, and a 422 for contact ids that are no address.
Payloads are the real shapes of shared/wire/waha_lids_and_identity.md §2-3."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from api.webhooks.parsers.chatwoot import parse_chatwoot
from api.webhooks.parsers.email import parse_email
from api.webhooks.parsers.meta import parse_messenger, parse_whatsapp
from api.webhooks.parsers.waha import alt_phone_id, parse_waha
from models.email_in.service import email_contact
from models.identity import ContactIdError
from tests.api.webhooks.conftest import payload_json

NOW = datetime(2025, 1, 1, tzinfo=UTC)

# NOWEB DM delivered from the hidden id, `message.any` [waha #1418] (verbatim payload).
NOWEB_LID_PAYLOAD: dict[str, Any] = {
    "id": "false_176369157804064@lid_3A8E1EBFE4943CA06D82",
    "timestamp": 1759031179,
    "from": "176369157804064@lid",
    "fromMe": False,
    "source": "app",
    "body": "Iya sist",
    "hasMedia": False,
    "media": None,
}


def waha(payload: dict[str, Any], event: str = "message.any") -> bytes:
    return json.dumps({"event": event, "session": "default", "payload": payload}).encode()


def test_waha_lid_sender_without_alt_keeps_the_lid_and_the_stable_key() -> None:
    (msg,) = parse_waha(waha(NOWEB_LID_PAYLOAD), tenant_id="t").messages
    assert msg.contact == "176369157804064@lid"
    assert msg.provider_message_id == "false_3A8E1EBFE4943CA06D82"


def test_waha_twins_carry_the_same_key() -> None:
    twin = dict(NOWEB_LID_PAYLOAD, id="false_6281234567890@c.us_3A8E1EBFE4943CA06D82")
    twin["from"] = "6281234567890@c.us"
    (a,) = parse_waha(waha(NOWEB_LID_PAYLOAD), tenant_id="t").messages
    (b,) = parse_waha(waha(twin), tenant_id="t").messages
    assert a.provider_message_id == b.provider_message_id == "false_3A8E1EBFE4943CA06D82"
    assert b.contact == "6281234567890@c.us"


@pytest.mark.parametrize(
    "data",
    [
        # NOWEB (Baileys) key, DM in lid addressing mode: remoteJidAlt [Baileys #1810]
        {
            "key": {
                "remoteJid": "176369157804064@lid",
                "remoteJidAlt": "6281234567890@s.whatsapp.net",
            }
        },
        # ... with the device suffix WAHA #1443 reports
        {
            "key": {
                "remoteJid": "176369157804064@lid",
                "remoteJidAlt": "6281234567890:17@s.whatsapp.net",
            }
        },
        # NOWEB senderPn [Baileys #2081]
        {
            "key": {
                "remoteJid": "176369157804064@lid",
                "fromMe": False,
                "id": "3A8E1EBFE4943CA06D82",
                "senderPn": "6281234567890@s.whatsapp.net",
            },
            "messageTimestamp": 1759031179,
            "pushName": "",
        },
        # GOWS (whatsmeow) Info.SenderAlt [whatsmeow #1262]
        {"Info": {"Sender": "176369157804064@lid", "SenderAlt": "6281234567890@s.whatsapp.net"}},
    ],
)
def test_waha_lid_sender_takes_the_phone_from_data(data: dict[str, Any]) -> None:
    (msg,) = parse_waha(waha(dict(NOWEB_LID_PAYLOAD, _data=data)), tenant_id="t").messages
    assert msg.contact == "6281234567890@c.us"
    assert msg.provider_message_id == "false_3A8E1EBFE4943CA06D82"


def test_waha_alt_ids_that_are_no_phone_are_not_used() -> None:
    assert alt_phone_id({"Info": {"SenderAlt": ""}}) is None  # whatsmeow: may be empty
    assert alt_phone_id({"key": {"remoteJidAlt": "99@lid"}}) is None
    assert alt_phone_id({"key": "not an object", "senderPn": 5}) is None
    # GitHub mangled this one into a markdown link in Baileys #2081: not a JID, ignored.
    mangled = "[9176434xxxxx@s.whatsapp.net](mailto:9176434xxxxx@s.whatsapp.net)"
    assert alt_phone_id({"key": {"senderPn": mangled}}) is None
    (msg,) = parse_waha(
        waha(dict(NOWEB_LID_PAYLOAD, _data={"Info": {"SenderAlt": ""}})), tenant_id="t"
    ).messages
    assert msg.contact == "176369157804064@lid"


def test_waha_lid_with_device_suffix_is_stripped() -> None:
    doc = dict(NOWEB_LID_PAYLOAD, **{"from": "176369157804064:12@lid"})
    (msg,) = parse_waha(waha(doc), tenant_id="t").messages
    assert msg.contact == "176369157804064@lid"


def test_waha_group_with_lid_participant_is_keyed_by_the_group() -> None:
    # NOWEB group, 4-part id with the participant [waha #1055] (excerpt as documented).
    doc = {
        "id": "false_120363420500389503@g.us_3DCB1F5DF33062A533AE947FD5AE7140_172078351257794@lid",
        "timestamp": 1750143883,
        "from": "120363420500389503@g.us",
        "fromMe": False,
        "source": "app",
        "body": "测试信息",
        "to": "120363420500389503@g.us",
        "participant": "172078351257794@lid",
        "hasMedia": False,
        "media": None,
        "_data": {
            "key": {"remoteJid": "120363420500389503@g.us", "participant": "172078351257794@lid"}
        },
    }
    (msg,) = parse_waha(waha(doc, "message"), tenant_id="t", group_chats_enabled=True).messages
    assert msg.contact == "120363420500389503@g.us"
    assert msg.provider_message_id == "false_3DCB1F5DF33062A533AE947FD5AE7140"


@pytest.mark.parametrize("bad", ["1234\x00@c.us", "1234@c.us\n", "9" * 400 + "@c.us"])
def test_waha_bad_sender_is_422(bad: str) -> None:
    with pytest.raises(ContactIdError, match="invalid contact id"):
        parse_waha(waha(dict(NOWEB_LID_PAYLOAD, **{"from": bad})), tenant_id="t")


def test_meta_contacts_are_normalised_and_bad_ones_refused() -> None:
    doc = payload_json("whatsapp_text.json")
    (msg,) = parse_whatsapp(json.dumps(doc).encode(), tenant_id="t").messages
    assert msg.contact == "16505551234" and msg.contact_name == "Sheena Nelson"
    doc["entry"][0]["changes"][0]["value"]["messages"][0]["from"] = "1650\x1b5551234"
    with pytest.raises(ContactIdError):
        parse_whatsapp(json.dumps(doc).encode(), tenant_id="t")

    fb = payload_json("messenger_text.json")
    fb["entry"][0]["messaging"][0]["sender"]["id"] = " USER_ID "
    (msg,) = parse_messenger(json.dumps(fb).encode(), tenant_id="t").messages
    assert msg.contact == "USER_ID"
    fb["entry"][0]["messaging"][0]["sender"]["id"] = "x" * 1000
    with pytest.raises(ContactIdError, match="at most"):
        parse_messenger(json.dumps(fb).encode(), tenant_id="t")


def test_chatwoot_contact_id() -> None:
    doc = payload_json("chatwoot_message_created.json")
    (msg,) = parse_chatwoot(json.dumps(doc).encode(), tenant_id="t").messages
    assert msg.contact == "14"
    doc["conversation"]["contact_inbox"]["contact_id"] = "14\r\n"
    with pytest.raises(ContactIdError, match="U\\+000D"):
        parse_chatwoot(json.dumps(doc).encode(), tenant_id="t")


def test_email_address_is_lower_cased() -> None:
    doc = payload_json("email_message.json")
    email = parse_email(json.dumps(doc).encode())
    assert email_contact(email.from_address) == "jane.doe@example.com"
    assert email.from_name == "Jane Doe"
