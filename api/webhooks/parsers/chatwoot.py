"""Chatwoot webhooks -> InboundMessage / release. Shapes: shared/wire/chatwoot.md.

The conversation's workflow is keyed by the Chatwoot CONTACT id (one lead, one conversation
workflow, whatever Chatwoot conversation they write in); the Chatwoot conversation id is the
thread replies go to."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from api.webhooks.parsers import Loose, load_json, validate
from models.common import Channel, Role
from models.identity import normalise_contact
from models.messages import InboundMessage
from models.webhooks import ConversationRelease, ParsedWebhook, WebhookPayloadError

# Chatwoot's enum message_type { incoming: 0, outgoing: 1, activity: 2, template: 3 }: the
# top-level field is the name, nested copies use the number; accept both.
_MESSAGE_TYPES = {0: "incoming", 1: "outgoing", 2: "activity", 3: "template"}
CONTACT_EVENTS = frozenset({"contact_created", "contact_updated"})


class _Event(Loose):
    event: str


class _Person(Loose):
    id: int | str | None = None
    name: str | None = None
    type: str | None = Field(default=None, description="contact | user | agent_bot")


class _ContactInbox(Loose):
    contact_id: int | str | None = None


class _Meta(Loose):
    sender: _Person | None = None


class _Conversation(Loose):
    id: int | str
    status: str | None = None
    contact_inbox: _ContactInbox | None = None
    meta: _Meta | None = None

    def contact(self) -> str | None:
        if self.contact_inbox is not None and self.contact_inbox.contact_id is not None:
            return str(self.contact_inbox.contact_id)
        if self.meta is not None and self.meta.sender is not None and self.meta.sender.id:
            return str(self.meta.sender.id)
        return None

    def contact_name(self) -> str | None:
        if self.meta is not None and self.meta.sender is not None:
            return self.meta.sender.name or None
        return None


class _Attachment(Loose):
    data_url: str | None = None
    file_type: str | None = None


class _Message(Loose):
    id: int | str
    content: str | None = None
    created_at: datetime
    message_type: str | int
    private: bool = False
    sender: _Person | None = None
    conversation: _Conversation
    attachments: list[_Attachment] = Field(default_factory=list)


def _require_contact(conversation: _Conversation) -> str:
    contact = conversation.contact()
    if contact is None:
        problem = (
            "conversation.contact_inbox.contact_id (or conversation.meta.sender.id) is required"
        )
        raise WebhookPayloadError(f"malformed Chatwoot webhook: {problem}", [problem])
    return normalise_contact(Channel.CHATWOOT, contact)


def parse_chatwoot(body: bytes, *, tenant_id: str) -> ParsedWebhook:
    raw: Any = load_json(body)
    event = validate(_Event, raw, "Chatwoot webhook").event
    if event == "message_created":
        return _message_created(validate(_Message, raw, "Chatwoot message_created"), tenant_id)
    if event == "conversation_status_changed":
        conversation = validate(_Conversation, raw, "Chatwoot conversation_status_changed")
        contact = _require_contact(conversation)
        if conversation.status != "resolved":
            return ParsedWebhook.ignore(
                f"Chatwoot conversation {conversation.id} is now {conversation.status!r}, "
                "only 'resolved' releases the lead"
            )
        return ParsedWebhook(
            releases=(
                ConversationRelease(
                    tenant_id=tenant_id,
                    channel=Channel.CHATWOOT,
                    contact=contact,
                    by=f"chatwoot: conversation {conversation.id} resolved",
                ),
            )
        )
    if event in CONTACT_EVENTS:
        return ParsedWebhook.ignore(f"Chatwoot {event}: contact events are not handled yet")
    return ParsedWebhook.ignore(f"Chatwoot event {event!r} is not a message")


def _message_created(msg: _Message, tenant_id: str) -> ParsedWebhook:
    kind = (
        _MESSAGE_TYPES.get(msg.message_type, "?")
        if isinstance(msg.message_type, int)
        else msg.message_type
    )
    if msg.private:
        return ParsedWebhook.ignore(f"Chatwoot message {msg.id}: a private note")
    if kind not in ("incoming", "outgoing"):
        return ParsedWebhook.ignore(f"Chatwoot message {msg.id}: message_type {kind!r}")
    sender_type = (msg.sender.type or "").lower() if msg.sender else ""
    if kind == "outgoing" and sender_type != "user":
        # Sent through the API by leadflow itself or by an agent bot: our own echo.
        return ParsedWebhook.ignore(
            f"Chatwoot message {msg.id}: our own outgoing message (sender {sender_type or 'none'})"
        )
    role = Role.HUMAN if kind == "outgoing" else Role.LEAD

    contact = _require_contact(msg.conversation)
    urls = tuple(a.data_url for a in msg.attachments if a.data_url)
    text = (msg.content or "").strip()
    if not text and urls:
        kinds = ", ".join(a.file_type or "attachment" for a in msg.attachments)
        text = f"[{kinds}]"
    if not text:
        return ParsedWebhook.ignore(f"Chatwoot message {msg.id}: no content")

    name = msg.conversation.contact_name()
    if role is Role.LEAD and msg.sender is not None and msg.sender.name:
        name = msg.sender.name
    return ParsedWebhook(
        messages=(
            InboundMessage(
                tenant_id=tenant_id,
                channel=Channel.CHATWOOT,
                contact=contact,
                provider_message_id=str(msg.id),
                text=text,
                sent_at=msg.created_at,
                role=role,
                contact_name=name,
                thread=str(msg.conversation.id),
                media_urls=urls,
            ),
        )
    )
