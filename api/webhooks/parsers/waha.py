"""WAHA (WhatsApp HTTP API) webhooks -> InboundMessage. Shapes: shared/wire/waha.md and
shared/wire/waha_lids_and_identity.md.

The contact is the normalised chat id (models/identity.py); a sender WAHA names by its hidden
id (`…@lid`) is given its phone when the engine put one in `_data` (`remoteJidAlt`, `senderPn`,
`SenderAlt`), else api/webhooks/waha_identity.py asks WAHA's lids API. The message id becomes
WAHA's stable key `{fromMe}_{id}`, the same for the @c.us and @lid copies of one message."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from api.webhooks.parsers import Loose, load_json, validate
from models.common import Channel
from models.identity import (
    WAHA_LID_SUFFIX,
    WAHA_PHONE_SUFFIX,
    normalise_contact,
    normalise_waha_chat_id,
    waha_message_key,
)
from models.messages import InboundMessage
from models.webhooks import ParsedWebhook, WebhookPayloadError

# "message" is every incoming message; "message.any" also carries our own sends (fromMe).
# Both are accepted: a session subscribed to both delivers a message twice, which the
# deterministic delivery drops.
MESSAGE_EVENTS = frozenset({"message", "message.any"})
RECEIPT_EVENTS = frozenset({"message.ack", "message.ack.group"})


class _Envelope(Loose):
    event: str
    session: str | None = None
    payload: Any = None


class _Media(Loose):
    url: str | None = None
    mimetype: str | None = None


class _Message(Loose):
    id: str
    timestamp: int = Field(description="Unix seconds.")
    from_: str = Field(alias="from")
    fromMe: bool = False
    participant: str | None = None
    body: str | None = None
    hasMedia: bool = False
    media: _Media | None = None
    data: dict[str, Any] = Field(default_factory=dict, alias="_data")


# Where engines put the phone JID of a sender WAHA names by its @lid (waha lids notes §2):
# NOWEB (Baileys) in the message key, GOWS (whatsmeow) in `Info`; top level for good measure.
_ALT_PHONE_FIELDS = ("remoteJidAlt", "senderPn", "SenderAlt", "RemoteJidAlt", "participantAlt")


def normalise_chat_id(chat_id: str) -> str:
    """The chat id WAHA answers to (`@s.whatsapp.net` -> `@c.us`, no device part)."""
    return normalise_waha_chat_id(chat_id)


def alt_phone_id(data: dict[str, Any]) -> str | None:
    """The sender's phone chat id (`{digits}@c.us`) from the engine's raw `_data`, if it has one."""
    places: list[Any] = [data.get("key"), data.get("Info"), data]
    for place in places:
        if not isinstance(place, dict):
            continue
        for name in _ALT_PHONE_FIELDS:
            value = place.get(name)
            if not isinstance(value, str) or not value.strip():
                continue
            chat = normalise_waha_chat_id(value)
            digits = chat.removesuffix(WAHA_PHONE_SUFFIX)
            if chat.endswith(WAHA_PHONE_SUFFIX) and digits.isdigit():
                return chat
    return None


def parse_waha(body: bytes, *, tenant_id: str, group_chats_enabled: bool = False) -> ParsedWebhook:
    envelope = validate(_Envelope, load_json(body), "WAHA webhook")
    event = envelope.event
    if event in RECEIPT_EVENTS:
        return ParsedWebhook.ignore(f"WAHA {event}: a delivery/read receipt, not a message")
    if event not in MESSAGE_EVENTS:
        return ParsedWebhook.ignore(f"WAHA event {event!r} is not a lead's message")
    if not isinstance(envelope.payload, dict):
        problem = "payload: an object is required for a message event"
        raise WebhookPayloadError(f"malformed WAHA webhook: {problem}", [problem])
    msg = validate(_Message, envelope.payload, f"WAHA {event} payload")

    if msg.fromMe:
        return ParsedWebhook.ignore(f"WAHA message {msg.id}: our own outgoing message (fromMe)")
    chat = normalise_contact(Channel.WAHA, msg.from_)
    if chat.endswith(WAHA_LID_SUFFIX):
        chat = alt_phone_id(msg.data) or chat
    if chat == "status@broadcast" or chat.endswith(("@broadcast", "@newsletter")):
        return ParsedWebhook.ignore(f"WAHA message {msg.id}: status/channel broadcast {chat}")
    if chat.endswith("@g.us") and not group_chats_enabled:
        return ParsedWebhook.ignore(
            f"WAHA message {msg.id}: group chat {chat} (group chats are disabled for this tenant)"
        )

    media_urls: tuple[str, ...] = ()
    text = (msg.body or "").strip()
    if msg.hasMedia and msg.media is not None and msg.media.url:
        media_urls = (msg.media.url,)
        # The workflow reasons over text: a captionless photo still is a message from the lead.
        text = text or f"[{msg.media.mimetype or 'media'}]"
    if not text:
        return ParsedWebhook.ignore(f"WAHA message {msg.id}: no text and no downloaded media")

    name = msg.data.get("notifyName") or msg.data.get("pushName")
    return ParsedWebhook(
        messages=(
            InboundMessage(
                tenant_id=tenant_id,
                channel=Channel.WAHA,
                contact=chat,
                provider_message_id=waha_message_key(msg.id),
                text=text,
                sent_at=datetime.fromtimestamp(msg.timestamp, tz=UTC),
                contact_name=name if isinstance(name, str) and name.strip() else None,
                media_urls=media_urls,
            ),
        )
    )
