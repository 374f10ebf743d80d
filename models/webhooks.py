"""What a webhook parser makes of a provider's payload, and what the webhook answers.

Parsers are pure: bytes in, a `ParsedWebhook` out (or `WebhookPayloadError`). The route then
delivers the messages and releases to Temporal and answers with a `WebhookAck`."""

from __future__ import annotations

from pydantic import Field, field_validator

from models.common import Channel
from models.messages import Frozen, InboundMessage


class WebhookPayloadError(ValueError):
    """The body is not the provider's payload (bad JSON, missing required fields): a 422."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems or []


class ConversationRelease(Frozen):
    """A human handed the conversation back (e.g. Chatwoot conversation resolved)."""

    tenant_id: str
    channel: Channel
    contact: str
    by: str = Field(description="Who released it, recorded by the workflow.")


class ParsedWebhook(Frozen):
    """One delivery may carry several events (Meta batches them); each is either a message to
    deliver, a release, or ignored with a reason."""

    messages: tuple[InboundMessage, ...] = ()
    releases: tuple[ConversationRelease, ...] = ()
    ignored: tuple[str, ...] = Field(default=(), description="Why each other event was skipped.")

    @classmethod
    def ignore(cls, reason: str) -> ParsedWebhook:
        return cls(ignored=(reason,))

    def merge(self, other: ParsedWebhook) -> ParsedWebhook:
        return ParsedWebhook(
            messages=self.messages + other.messages,
            releases=self.releases + other.releases,
            ignored=self.ignored + other.ignored,
        )


class Delivered(Frozen):
    workflow_id: str
    provider_message_id: str | None = None
    signal: str = "inbound"
    run_id: str | None = None
    started: bool | None = Field(
        default=None, description="True when this delivery started the workflow run."
    )


class WebhookAck(Frozen):
    """The body of every 2xx webhook answer."""

    status: str = Field(
        description="accepted (delivered to Temporal) | queued (stored; Temporal gets it "
        "shortly, nothing is lost) | ignored"
    )
    delivered: tuple[Delivered, ...] = ()
    ignored: tuple[str, ...] = ()


class EmailWebhook(Frozen):
    """The JSON shape of `POST /webhooks/email/{tenant}` (see docs/webhooks.md).

    Written by whatever bridges the mailbox to leadflow (a mail server hook, an IMAP poller,
    a provider's inbound-parse webhook through a small adapter)."""

    from_: str = Field(
        alias="from", description="Sender, `addr@example.com` or `Name <addr@example.com>`."
    )
    to: tuple[str, ...] = Field(default=(), description="Recipients (ours); a string or a list.")
    subject: str = ""
    text: str = Field(description="Plain-text body (the bridge converts HTML to text).")
    message_id: str = Field(description="The Message-ID header; redeliveries repeat it.")
    in_reply_to: str | None = Field(default=None, description="The In-Reply-To header.")
    date: str | None = Field(
        default=None,
        description="ISO 8601 or RFC 5322 date; the time the API received it when absent.",
    )

    @field_validator("to", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        # Bridges often pass a single address as a plain string.
        return (value,) if isinstance(value, str) else value
