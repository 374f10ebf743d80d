"""Messages in and out: the normalized inbound message every webhook parser produces."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from models.common import Channel, Role


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class InboundMessage(Frozen):
    """One message from a lead (or a human agent, role=HUMAN) on any channel."""

    tenant_id: str
    channel: Channel
    contact: str = Field(description="Provider address of the lead: chat id, phone, PSID, e-mail.")
    provider_message_id: str = Field(description="Used to drop redelivered webhooks.")
    text: str
    sent_at: datetime
    role: Role = Role.LEAD
    contact_name: str | None = None
    thread: str | None = Field(
        default=None,
        description="Provider conversation to answer in: Chatwoot conversation id; for e-mail the "
        "lead's Message-ID (the reply's In-Reply-To).",
    )
    media_urls: tuple[str, ...] = ()
    subject: str | None = Field(
        default=None, description="E-mail: the lead's subject (the answers are 'Re: …')."
    )


class TranscriptEntry(Frozen):
    role: Role
    text: str
    at: datetime
    provider_message_id: str | None = None
    knowledge_ids: tuple[str, ...] = ()


class OutboundMessage(Frozen):
    """A message leadflow sends; the idempotency key makes a retried send a no-op."""

    tenant_id: str
    channel: Channel
    to: str
    text: str
    idempotency_key: str
    thread: str | None = None
    subject: str | None = None
    conversation_id: str | None = None
    campaign_id: str | None = Field(
        default=None,
        description="Set when the conversation belongs to a campaign: e-mail carries "
        "List-Unsubscribe (one-click) for it.",
    )


class SendResult(Frozen):
    provider_message_id: str | None
    delivered_via: str = Field(
        description="Adapter that delivered it, or 'outbox' when stored only."
    )
    duplicate: bool = False
