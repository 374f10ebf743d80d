"""Inbound e-mail (leadflow's own JSON shape, `models.webhooks.EmailWebhook`, documented in
docs/webhooks.md) -> InboundMessage."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parseaddr, parsedate_to_datetime

from api.webhooks.parsers import load_json, validate
from models.common import Channel
from models.identity import normalise_contact
from models.messages import InboundMessage
from models.webhooks import EmailWebhook, ParsedWebhook, WebhookPayloadError


def _bad(problem: str) -> WebhookPayloadError:
    return WebhookPayloadError(f"malformed e-mail webhook: {problem}", [problem])


def parse_date(value: str) -> datetime:
    """ISO 8601 or the RFC 5322 Date header as mail carries it; naive times are UTC."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        try:
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            raise _bad(f"date: {value!r} is neither ISO 8601 nor an RFC 5322 date") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_email(body: bytes, *, tenant_id: str, received_at: datetime) -> ParsedWebhook:
    mail = validate(EmailWebhook, load_json(body), "e-mail webhook")
    name, address = parseaddr(mail.from_)
    local, _, domain = address.partition("@")
    if not local or "." not in domain:
        raise _bad(f"from: {mail.from_!r} has no valid e-mail address")
    if not mail.message_id.strip():
        raise _bad("message_id: must not be empty (it makes redeliveries harmless)")
    text = mail.text.strip()
    if not text:
        return ParsedWebhook.ignore(f"e-mail {mail.message_id}: empty body")
    return ParsedWebhook(
        messages=(
            InboundMessage(
                tenant_id=tenant_id,
                channel=Channel.EMAIL,
                # Addresses are case-insensitive in practice: one lead, one conversation.
                contact=normalise_contact(Channel.EMAIL, address),
                provider_message_id=mail.message_id.strip(),
                text=text,
                sent_at=parse_date(mail.date) if mail.date else received_at,
                contact_name=name.strip() or None,
                # The contract's thread for e-mail is the subject (replies go out as "Re: ...").
                thread=mail.subject.strip() or None,
            ),
        )
    )
