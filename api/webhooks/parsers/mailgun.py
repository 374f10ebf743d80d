"""Mailgun inbound routes (`forward()` to /webhooks/mailgun/{tenant}) -> `InboundEmail`.

Two shapes (wire doc inbound_email.md §b): the raw message in `body-mime` (a route URL ending
in `mime`), read whole; or the parsed fields (`from`, `subject`, `body-plain`, `body-html`,
`message-headers` = a JSON list of [name, value] in order). Mailgun's own `stripped-text` is not
used: leadflow strips every mail alike (models/email_in/strip.py)."""

from __future__ import annotations

from collections.abc import Mapping

from api.webhooks.parsers import load_json
from api.webhooks.parsers.email import read_email
from models.email_in.message import InboundEmail
from models.email_in.parse import parse_fields, parse_mime
from models.webhooks import WebhookPayloadError

WHAT = "Mailgun inbound webhook"
# Mailgun also posts every MIME header as a top-level field: used when message-headers is absent.
_HEADER_FIELDS = ("From", "To", "Subject", "Date", "Message-Id", "In-Reply-To", "References")


def _headers(fields: Mapping[str, str]) -> list[tuple[str, str]]:
    raw = fields.get("message-headers")
    if raw is None:
        return [(name, fields[name]) for name in _HEADER_FIELDS if fields.get(name)]
    listed = load_json(raw.encode())
    if not isinstance(listed, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, str) for v in pair)
        for pair in listed
    ):
        raise WebhookPayloadError(
            f"malformed {WHAT}: message-headers is not a JSON list of [name, value] pairs",
            ["message-headers: expected a JSON list of [name, value] pairs"],
        )
    return [(name, value) for name, value in listed]


def parse_mailgun(fields: Mapping[str, str]) -> InboundEmail:
    mime = fields.get("body-mime")
    if mime is not None:
        return read_email(lambda: parse_mime(mime.encode()), WHAT)
    headers = _headers(fields)
    sender = fields.get("from") or fields.get("From")
    missing = [
        name
        for name, present in (
            ("from", bool(sender) or any(n.lower() == "from" for n, _ in headers)),
            ("body-plain or body-html", "body-plain" in fields or "body-html" in fields),
        )
        if not present
    ]
    if missing:
        problems = [f"{name}: field required" for name in missing]
        raise WebhookPayloadError(f"malformed {WHAT}: " + "; ".join(problems), problems)
    return read_email(
        lambda: parse_fields(
            headers=headers,
            from_=sender,
            to=[fields["recipient"]] if fields.get("recipient") else [],
            subject=fields.get("subject"),
            text=fields.get("body-plain"),
            html=fields.get("body-html"),
        ),
        WHAT,
    )
