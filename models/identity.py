"""One person, one id: contact ids and provider message keys normalised per channel.

Every webhook parser and every API call that names a contact goes through `normalise_contact`,
so the conversation workflow id (a keyed hash of it, models/workflow_ids.py) and the lead id derived
from it are the same whichever form a provider used. The rules (docs/webhooks.md, "Identity"):

- WAHA: `…@s.whatsapp.net` (the JID form GOWS/NOWEB use inside `_data`) becomes `…@c.us`; a
  device suffix `:NN` before the `@` is dropped (`123:17@lid` -> `123@lid`); a bare phone
  (`+49 151 …`, `0049151…`, `49151…`) becomes `{digits}@c.us`. `@lid` stays `@lid` here:
  mapping it to the phone needs WAHA's lids API (api/webhooks/waha_identity.py).
- Meta WhatsApp Cloud: the `wa_id` is the phone's digits without `+`; a `+`, spaces or dashes
  are dropped. Messenger: the page-scoped id (PSID) as given, trimmed.
- E-mail: the whole address lower-cased, the mailbox part included. RFC 5321 lets a server treat
  the local part case-sensitively, but no mail provider leads write from does, and one lead
  under two spellings is the worse failure. `str.lower` rather than `str.casefold` so ids stored
  before this module existed (the e-mail parser already lower-cased) keep their conversation.
- Chatwoot: the contact id as given, trimmed.

A contact id with control characters (or invisible format characters, line separators), empty,
or longer than MAX_CONTACT_LENGTH is refused with
`ContactIdError` (a `WebhookPayloadError`, so webhooks answer 422 and deliver nothing; the API
turns it into a 422 too)."""

from __future__ import annotations

import re
import unicodedata

import phonenumbers
from pydantic import BaseModel, ConfigDict

from models.common import Channel
from models.webhooks import WebhookPayloadError

# An e-mail address is at most 254 characters (RFC 5321 path limit); WhatsApp ids, PSIDs and
# Chatwoot ids are far shorter. Anything longer is not an address: refuse it before it becomes a
# workflow id, a lead id and a row in several tables.
MAX_CONTACT_LENGTH = 320

# WAHA chat id suffixes (shared/wire/waha.md, "Chat id formats").
WAHA_PHONE_SUFFIX = "@c.us"
WAHA_JID_SUFFIX = "@s.whatsapp.net"
WAHA_LID_SUFFIX = "@lid"

# Characters no address contains: C0/C1 controls (NUL, CR, LF, ESC, DEL…) break logs, ids and
# headers; invisible format characters (zero-width, bidi overrides) make two ids that look the
# same differ (or one look like another); line/paragraph separators are line breaks.
_REFUSED_CATEGORIES = {
    "Cc": "control character",
    "Cf": "invisible format character",
    "Zl": "line separator",
    "Zp": "paragraph separator",
    "Cs": "lone surrogate",
}

_PHONE_CHARS = re.compile(r"^\+?[0-9][0-9 ().\-]*$")
_DEVICE_SUFFIX = re.compile(r"^([^@:]+):[0-9]+(@.+)$")


class ContactIdError(WebhookPayloadError):
    """A contact id that cannot be anyone's address: a 422 that starts nothing."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"invalid contact id: {problem}", [f"contact: {problem}"])
        self.problem = problem


class ContactDetails(BaseModel):
    """What the channel's contact id tells about the lead, for the lead's own fields."""

    model_config = ConfigDict(frozen=True)

    phone: str | None = None  # E.164, e.g. "+4915112345678"
    email: str | None = None


def check_contact(contact: str) -> str:
    """`contact` trimmed; `ContactIdError` when it has control characters, is empty or too long."""
    if not isinstance(contact, str):
        raise ContactIdError(f"must be a string, got {type(contact).__name__}")
    if len(contact) > MAX_CONTACT_LENGTH:
        raise ContactIdError(f"{len(contact)} characters; at most {MAX_CONTACT_LENGTH}")
    for char in contact:
        kind = _REFUSED_CATEGORIES.get(unicodedata.category(char))
        if kind is not None:
            raise ContactIdError(f"contains the {kind} U+{ord(char):04X}")
    trimmed = contact.strip()
    if not trimmed:
        raise ContactIdError("must not be empty")
    return trimmed


def strip_device(jid: str) -> str:
    """`123:17@lid` -> `123@lid`: LID/phone JIDs may carry the sending device (waha lids notes)."""
    match = _DEVICE_SUFFIX.match(jid)
    return match.group(1) + match.group(2) if match else jid


def normalise_waha_chat_id(chat_id: str) -> str:
    """A WAHA chat id in the form WAHA answers to: `@c.us` for phones, `@lid` without device."""
    chat = strip_device(chat_id.strip())
    if chat.endswith(WAHA_JID_SUFFIX):
        chat = chat.removesuffix(WAHA_JID_SUFFIX) + WAHA_PHONE_SUFFIX
    if "@" not in chat and _PHONE_CHARS.match(chat):
        # A bare phone (an API caller's "+49 151 …"): WAHA's user id is the digits @c.us.
        chat = _phone_digits(chat) + WAHA_PHONE_SUFFIX
    return chat


def normalise_contact(channel: Channel | str, contact: str) -> str:
    """The one id of this contact on this channel (see the module docstring for the rules)."""
    kind = Channel(channel)
    value = check_contact(contact)
    if kind is Channel.WAHA:
        # A bare phone gains `@c.us`: the channel's form must fit the limit too (its row and
        # the lead's address hold it), on every path that normalises, not per caller.
        normal = normalise_waha_chat_id(value)
    elif kind is Channel.WHATSAPP:
        # wa_id is digits only; accept the phone as people write it.
        normal = _phone_digits(value) if _PHONE_CHARS.match(value) else value
    elif kind is Channel.EMAIL:
        normal = value.lower()
    else:
        normal = value  # Messenger PSID, Chatwoot contact id: opaque, trimmed
    if len(normal) > MAX_CONTACT_LENGTH:
        raise ContactIdError(
            f"{len(normal)} characters as a {kind.value} id; at most {MAX_CONTACT_LENGTH}"
        )
    return normal


def phone_e164(raw: str, region: str | None = None) -> str | None:
    """`raw` as an E.164 phone (`+4915112345678`), or None when it is not a valid number.

    Without a region the number must be international (leading `+`, or digits with the country
    code, as WhatsApp ids are)."""
    text = raw.strip()
    if not text:
        return None
    if region is None and not text.startswith("+"):
        text = "+" + text
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def contact_details(channel: Channel | str, contact: str) -> ContactDetails:
    """The lead's phone (E.164) or e-mail as the channel's contact id gives them.

    WAHA `…@c.us` and Meta WhatsApp ids are phones; an unmapped `@lid` and group ids are not;
    e-mail contacts are the address. Messenger and Chatwoot ids say nothing about the person."""
    kind = Channel(channel)
    value = normalise_contact(kind, contact)
    if kind is Channel.WAHA:
        if value.endswith(WAHA_PHONE_SUFFIX):
            return ContactDetails(phone=phone_e164(value.removesuffix(WAHA_PHONE_SUFFIX)))
        return ContactDetails()
    if kind is Channel.WHATSAPP:
        return ContactDetails(phone=phone_e164(value) if value.isdigit() else None)
    if kind is Channel.EMAIL:
        return ContactDetails(email=value if "@" in value else None)
    return ContactDetails()


def waha_message_key(message_id: str) -> str:
    """WAHA's stable message key: `{fromMe}_{id}` of `{fromMe}_{chatId}_{id}[_{participant}]`.

    The @c.us and @lid deliveries of one message differ only in the chat id part, so this key is
    the same for both twins (WAHA's own GOWS dedup uses it, waha lids notes §5). The id is split on
    `_` exactly as WAHA's `parseMessageIdSerialized` does; an id without `_` (GOWS/NOWEB accept
    plain ids) or of another shape is its own key."""
    if "_" not in message_id:
        return message_id
    parts = message_id.split("_")
    if len(parts) not in (3, 4):
        return message_id
    from_me = "true" if parts[0] == "true" else "false"
    return f"{from_me}_{parts[2]}"


def message_key(channel: Channel | str, provider_message_id: str) -> str:
    """The provider's stable key of a message: the same for every redelivery and every id form."""
    if Channel(channel) is Channel.WAHA:
        return waha_message_key(provider_message_id)
    return provider_message_id


def _phone_digits(value: str) -> str:
    """The digits of a phone written as people do; `00` is the international call prefix, not
    part of the number (as activities/channels/waha.py reads it)."""
    digits = "".join(char for char in value if char.isdigit())
    return digits[2:] if value.lstrip().startswith("00") else digits
