"""Meta webhooks -> InboundMessage: WhatsApp Cloud API (`object: whatsapp_business_account`)
and Messenger (`object: page`). Shapes: shared/wire/meta_whatsapp_cloud_and_messenger.md."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from api.webhooks.parsers import Loose, load_json, validate
from models.common import Channel
from models.identity import normalise_contact
from models.messages import InboundMessage
from models.webhooks import ParsedWebhook, WebhookPayloadError

# WhatsApp message types whose content is a media object with an optional caption.
_WA_MEDIA = ("image", "video", "audio", "document", "sticker")


class _Object(Loose):
    object: str


def _expect_object(raw: Any, expected: str, what: str) -> None:
    """Check `object` first: a payload posted to the wrong endpoint gets a message that says so
    instead of a list of missing fields."""
    found = validate(_Object, raw, what).object
    if found != expected:
        raise WebhookPayloadError(
            f"not a {what}: object is {found!r}, expected {expected!r}", [f"object: {found!r}"]
        )


# ---- WhatsApp Cloud API ----------------------------------------------------------------------


class _WaProfile(Loose):
    name: str | None = None


class _WaContact(Loose):
    wa_id: str
    profile: _WaProfile | None = None


class _WaMessage(Loose):
    from_: str = Field(alias="from")
    id: str
    timestamp: int = Field(description="Unix seconds, sent as a string.")
    type: str
    text: dict[str, Any] | None = None
    button: dict[str, Any] | None = None
    interactive: dict[str, Any] | None = None
    image: dict[str, Any] | None = None
    video: dict[str, Any] | None = None
    audio: dict[str, Any] | None = None
    document: dict[str, Any] | None = None
    sticker: dict[str, Any] | None = None
    location: dict[str, Any] | None = None


class _WaStatus(Loose):
    id: str
    status: str


class _WaValue(Loose):
    contacts: list[_WaContact] = Field(default_factory=list)
    messages: list[_WaMessage] = Field(default_factory=list)
    statuses: list[_WaStatus] = Field(default_factory=list)


class _WaChange(Loose):
    field: str
    value: _WaValue


class _WaEntry(Loose):
    id: str
    changes: list[_WaChange]


class _WaBody(Loose):
    object: str
    entry: list[_WaEntry]


def _wa_text(msg: _WaMessage) -> str | None:
    """The words of a message, or None for kinds that carry none we can use."""
    if msg.type == "text" and msg.text is not None:
        return str(msg.text.get("body") or "").strip() or None
    if msg.type == "button" and msg.button is not None:
        return str(msg.button.get("text") or "").strip() or None
    if msg.type == "interactive" and msg.interactive is not None:
        reply = msg.interactive.get("button_reply") or msg.interactive.get("list_reply")
        if isinstance(reply, dict):
            return str(reply.get("title") or "").strip() or None
        return None
    if msg.type in _WA_MEDIA:
        media = getattr(msg, msg.type) or {}
        # Media come as ids to download through the Graph API, not URLs: the text says what it was.
        return str(media.get("caption") or "").strip() or f"[{msg.type}]"
    if msg.type == "location" and msg.location is not None:
        place = msg.location.get("name") or msg.location.get("address") or ""
        lat, lon = msg.location.get("latitude"), msg.location.get("longitude")
        return f"[location {lat},{lon}] {place}".strip()
    return None


def parse_whatsapp(body: bytes, *, tenant_id: str) -> ParsedWebhook:
    raw = load_json(body)
    _expect_object(raw, "whatsapp_business_account", "WhatsApp Cloud API webhook")
    data = validate(_WaBody, raw, "WhatsApp Cloud API webhook")
    result = ParsedWebhook()
    for entry in data.entry:
        for change in entry.changes:
            if change.field != "messages":
                result = result.merge(
                    ParsedWebhook.ignore(f"WhatsApp field {change.field!r} is not messages")
                )
                continue
            result = result.merge(_wa_value(change.value, tenant_id))
    return result


def _wa_value(value: _WaValue, tenant_id: str) -> ParsedWebhook:
    names = {
        normalise_contact(Channel.WHATSAPP, c.wa_id): c.profile.name
        for c in value.contacts
        if c.profile and c.profile.name
    }
    messages: list[InboundMessage] = []
    ignored = [
        f"WhatsApp status {status.status!r} for {status.id}: a receipt, not a message"
        for status in value.statuses
    ]
    for msg in value.messages:
        text = _wa_text(msg)
        if text is None:
            ignored.append(f"WhatsApp message {msg.id}: type {msg.type!r} carries no text")
            continue
        contact = normalise_contact(Channel.WHATSAPP, msg.from_)
        messages.append(
            InboundMessage(
                tenant_id=tenant_id,
                channel=Channel.WHATSAPP,
                contact=contact,
                provider_message_id=msg.id,
                text=text,
                sent_at=datetime.fromtimestamp(msg.timestamp, tz=UTC),
                contact_name=names.get(contact),
            )
        )
    if not messages and not ignored:
        ignored.append("WhatsApp change without messages or statuses")
    return ParsedWebhook(messages=tuple(messages), ignored=tuple(ignored))


# ---- Messenger -------------------------------------------------------------------------------


class _Id(Loose):
    id: str


class _Attachment(Loose):
    type: str | None = None
    payload: dict[str, Any] | None = None


class _FbMessage(Loose):
    mid: str
    text: str | None = None
    is_echo: bool = False
    attachments: list[_Attachment] = Field(default_factory=list)


class _FbPostback(Loose):
    mid: str | None = None
    title: str | None = None
    payload: str | None = None


class _Messaging(Loose):
    sender: _Id
    recipient: _Id | None = None
    timestamp: int = Field(description="Unix milliseconds.")
    message: _FbMessage | None = None
    postback: _FbPostback | None = None
    delivery: dict[str, Any] | None = None
    read: dict[str, Any] | None = None


class _FbEntry(Loose):
    id: str
    messaging: list[_Messaging] = Field(default_factory=list)


class _FbBody(Loose):
    object: str
    entry: list[_FbEntry]


def parse_messenger(body: bytes, *, tenant_id: str) -> ParsedWebhook:
    raw = load_json(body)
    _expect_object(raw, "page", "Messenger webhook")
    data = validate(_FbBody, raw, "Messenger webhook")
    messages: list[InboundMessage] = []
    ignored: list[str] = []
    for entry in data.entry:
        if not entry.messaging:
            ignored.append(f"Messenger entry {entry.id} has no messaging events")
        for event in entry.messaging:
            parsed = _fb_event(event, tenant_id)
            if isinstance(parsed, str):
                ignored.append(parsed)
            else:
                messages.append(parsed)
    return ParsedWebhook(messages=tuple(messages), ignored=tuple(ignored))


def _fb_event(event: _Messaging, tenant_id: str) -> InboundMessage | str:
    """The lead's message, or why the event is ignored."""
    sent_at = datetime.fromtimestamp(event.timestamp / 1000, tz=UTC)
    if event.delivery is not None:
        return "Messenger delivery receipt, not a message"
    if event.read is not None:
        return "Messenger read receipt, not a message"
    if event.message is not None:
        msg = event.message
        if msg.is_echo:
            return f"Messenger message {msg.mid}: echo of the Page's own message"
        urls = tuple(
            str(a.payload["url"]) for a in msg.attachments if a.payload and a.payload.get("url")
        )
        kinds = ", ".join(a.type or "attachment" for a in msg.attachments)
        text = (msg.text or "").strip() or (f"[{kinds}]" if kinds else "")
        if not text:
            return f"Messenger message {msg.mid}: no text or attachments"
        return InboundMessage(
            tenant_id=tenant_id,
            channel=Channel.MESSENGER,
            contact=normalise_contact(Channel.MESSENGER, event.sender.id),
            provider_message_id=msg.mid,
            text=text,
            sent_at=sent_at,
            media_urls=urls,
        )
    if event.postback is not None and event.postback.mid and event.postback.title:
        # A tapped button reads like the lead typing its title.
        return InboundMessage(
            tenant_id=tenant_id,
            channel=Channel.MESSENGER,
            contact=normalise_contact(Channel.MESSENGER, event.sender.id),
            provider_message_id=event.postback.mid,
            text=event.postback.title,
            sent_at=sent_at,
        )
    return "Messenger event is not a message (no message, postback, delivery or read)"
