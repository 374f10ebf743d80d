"""Inbound e-mail in leadflow's own JSON shape (`models.webhooks.EmailWebhook`, documented in
docs/webhooks.md) -> `InboundEmail`, which `models.email_in.service.route_email` threads,
strips and classifies like any provider's mail."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parseaddr, parsedate_to_datetime

from api.webhooks.parsers import load_json, validate
from models.email_in.message import InboundEmail, MalformedEmail
from models.email_in.parse import parse_fields
from models.webhooks import EmailWebhook, WebhookPayloadError


def _bad(problem: str) -> WebhookPayloadError:
    return WebhookPayloadError(f"malformed e-mail webhook: {problem}", [problem])


def parse_date(value: str) -> datetime:
    """ISO 8601 or the RFC 5322 Date header as mail carries it; naive times are UTC."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        try:
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            raise _bad(f"date: {value!r} is neither ISO 8601 nor an RFC 5322 date") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def read_email(build: Callable[[], InboundEmail], what: str) -> InboundEmail:
    """`build()`, with a mail that cannot be read turned into the webhook's payload error."""
    try:
        return build()
    except MalformedEmail as exc:
        raise WebhookPayloadError(f"malformed {what}: {exc}", [str(exc)]) from exc


def parse_email(body: bytes) -> InboundEmail:
    mail = validate(EmailWebhook, load_json(body), "e-mail webhook")
    _, address = parseaddr(mail.from_)
    local, _, domain = address.partition("@")
    if not local or "." not in domain:
        raise _bad(f"from: {mail.from_!r} has no valid e-mail address")
    if not mail.message_id.strip().strip("<>").strip():
        raise _bad("message_id: must not be empty (it makes redeliveries harmless)")
    date = parse_date(mail.date) if mail.date else None
    headers = [("In-Reply-To", mail.in_reply_to)] if mail.in_reply_to else []
    email = read_email(
        lambda: parse_fields(
            headers=headers,
            from_=mail.from_,
            to=mail.to,
            subject=mail.subject,
            text=mail.text,
            message_id=_bracketed(mail.message_id.strip()),
        ),
        "e-mail webhook",
    )
    return email.model_copy(update={"date": date}) if date else email


def _bracketed(message_id: str) -> str:
    # Bridges pass the header's value, with or without its angle brackets.
    return message_id if message_id.startswith("<") else f"<{message_id}>"
