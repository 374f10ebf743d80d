"""One person, one id: the contact normaliser, contact details and message keys
(models/identity.py)."""

from __future__ import annotations

import pytest

from models.common import Channel
from models.identity import (
    MAX_CONTACT_LENGTH,
    ContactDetails,
    ContactIdError,
    check_contact,
    contact_details,
    message_key,
    normalise_contact,
    phone_e164,
    strip_device,
    waha_message_key,
)
from models.webhooks import WebhookPayloadError


@pytest.mark.parametrize(
    ("contact", "expected"),
    [
        ("31612345678@c.us", "31612345678@c.us"),
        ("31612345678@s.whatsapp.net", "31612345678@c.us"),
        ("31612345678:12@s.whatsapp.net", "31612345678@c.us"),  # device part (waha #1443)
        ("31612345678:3@c.us", "31612345678@c.us"),
        ("176369157804064@lid", "176369157804064@lid"),
        ("176369157804064:27@lid", "176369157804064@lid"),
        ("+31 6 1234 5678", "31612345678@c.us"),
        ("0031612345678", "31612345678@c.us"),
        ("31612345678", "31612345678@c.us"),
        ("  31612345678@c.us ", "31612345678@c.us"),
        ("120363420500389503@g.us", "120363420500389503@g.us"),
        ("status@broadcast", "status@broadcast"),
    ],
)
def test_waha_forms(contact: str, expected: str) -> None:
    assert normalise_contact(Channel.WAHA, contact) == expected
    assert normalise_contact("waha", expected) == expected  # idempotent


@pytest.mark.parametrize(
    ("contact", "expected"),
    [("16505551234", "16505551234"), ("+1 650-555-1234", "16505551234"), ("abc", "abc")],
)
def test_meta_whatsapp_wa_id(contact: str, expected: str) -> None:
    assert normalise_contact(Channel.WHATSAPP, contact) == expected


def test_messenger_and_chatwoot_ids_are_opaque() -> None:
    assert normalise_contact(Channel.MESSENGER, " 6789012345678901 ") == "6789012345678901"
    assert normalise_contact(Channel.CHATWOOT, "42") == "42"


def test_email_is_lower_cased_mailbox_included() -> None:
    assert normalise_contact(Channel.EMAIL, " Jane.Doe@Example.COM ") == "jane.doe@example.com"
    assert normalise_contact(Channel.EMAIL, "JANE.DOE@example.com") == normalise_contact(
        Channel.EMAIL, "jane.doe@EXAMPLE.com"
    )


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("31612345678", None, "+31612345678"),
        ("+49 151 23456789", None, "+4915123456789"),
        ("06 1234 5678", "NL", "+31612345678"),
        ("(650) 253-0000", "US", "+16502530000"),
        ("123", None, None),
        ("not a phone", None, None),
        ("", None, None),
    ],
)
def test_phone_e164(raw: str, region: str | None, expected: str | None) -> None:
    assert phone_e164(raw, region) == expected


@pytest.mark.parametrize(
    ("channel", "contact", "details"),
    [
        (Channel.WAHA, "31612345678@c.us", ContactDetails(phone="+31612345678")),
        (Channel.WAHA, "31612345678@s.whatsapp.net", ContactDetails(phone="+31612345678")),
        (Channel.WAHA, "176369157804064@lid", ContactDetails()),  # a hidden id is no phone
        (Channel.WAHA, "120363420500389503@g.us", ContactDetails()),
        (Channel.WHATSAPP, "16502530000", ContactDetails(phone="+16502530000")),
        (Channel.EMAIL, "Jane@Example.com", ContactDetails(email="jane@example.com")),
        (Channel.MESSENGER, "6789012345678901", ContactDetails()),
        (Channel.CHATWOOT, "42", ContactDetails()),
    ],
)
def test_contact_details(channel: Channel, contact: str, details: ContactDetails) -> None:
    assert contact_details(channel, contact) == details


@pytest.mark.parametrize(
    ("contact", "problem"),
    [
        ("3161234\x005678@c.us", "control character U+0000"),
        ("jane@example.com\r\nBcc: x@example.com", "control character U+000D"),
        ("lead\x1b[31m", "control character U+001B"),
        ("lead\x7f", "control character U+007F"),
        ("lead\x85", "control character U+0085"),
        ("3161234\u200b5678@c.us", "invisible format character U+200B"),  # zero-width space
        ("jane@example.com\u202e", "invisible format character U+202E"),  # bidi override
        ("lead\u2028x", "line separator U+2028"),
        ("lead\u2029x", "paragraph separator U+2029"),
        ("lead\ud800", "lone surrogate U+D800"),
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("1" * (MAX_CONTACT_LENGTH + 1), f"at most {MAX_CONTACT_LENGTH}"),
    ],
)
def test_bad_contact_ids_are_refused(contact: str, problem: str) -> None:
    for channel in Channel:
        with pytest.raises(ContactIdError) as caught:
            normalise_contact(channel, contact)
        assert problem in str(caught.value)
        # A WebhookPayloadError: the webhooks answer it with 422 and deliver nothing.
        assert isinstance(caught.value, WebhookPayloadError)
        assert caught.value.problems == [f"contact: {caught.value.problem}"]


def test_longest_allowed_contact_and_unicode_pass() -> None:
    longest = "a" * (MAX_CONTACT_LENGTH - len("@example.com")) + "@example.com"
    assert check_contact(longest) == longest
    assert normalise_contact(Channel.EMAIL, "José@Exämple.com") == "josé@exämple.com"


def test_strip_device() -> None:
    assert strip_device("123:7@lid") == "123@lid"
    assert strip_device("123@lid") == "123@lid"
    assert strip_device("abc") == "abc"


@pytest.mark.parametrize(
    ("message_id", "key"),
    [
        ("false_31612345678@c.us_3A8E1EBFE4943CA06D82", "false_3A8E1EBFE4943CA06D82"),
        ("false_176369157804064@lid_3A8E1EBFE4943CA06D82", "false_3A8E1EBFE4943CA06D82"),
        (
            "false_120363420500389503@g.us_3DCB1F5DF33062A533AE947FD5AE7140_172078351257794@lid",
            "false_3DCB1F5DF33062A533AE947FD5AE7140",
        ),
        ("true_8618138420573@c.us_3EB01366AE65565E416039", "true_3EB01366AE65565E416039"),
        ("3EB0965B123D06E0B70741", "3EB0965B123D06E0B70741"),  # plain ids pass through
        ("a_b", "a_b"),  # not WAHA's shape: its own key
        ("a_b_c_d_e", "a_b_c_d_e"),
    ],
)
def test_waha_message_key(message_id: str, key: str) -> None:
    assert waha_message_key(message_id) == key
    assert message_key(Channel.WAHA, message_id) == key


def test_other_providers_keep_their_message_id() -> None:
    assert message_key(Channel.WHATSAPP, "wamid.HBgL_x_y") == "wamid.HBgL_x_y"
    assert message_key(Channel.EMAIL, "<a_b_c@mail>") == "<a_b_c@mail>"


def test_a_contact_whose_channel_form_is_too_long_is_refused() -> None:
    # 320 digits fit as they came, but WAHA's form adds `@c.us`: refused on every path that
    # normalises (a webhook, outreach), not only where one caller checked.
    digits = "3" * MAX_CONTACT_LENGTH
    assert check_contact(digits) == digits
    with pytest.raises(ContactIdError) as caught:
        normalise_contact(Channel.WAHA, digits)
    assert f"{MAX_CONTACT_LENGTH + 5} characters as a waha id" in str(caught.value)
    fits = "3" * (MAX_CONTACT_LENGTH - len("@c.us"))
    assert normalise_contact(Channel.WAHA, fits) == f"{fits}@c.us"
