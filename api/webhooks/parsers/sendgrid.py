"""SendGrid Inbound Parse (multipart/form-data) -> `InboundEmail`.

With "POST the raw, full MIME message" on, the mail is in `email` and read whole; otherwise the
parsed fields: `headers` (one raw header block, where Message-ID/In-Reply-To/References are),
`from`, `to`, `subject`, `text`, `html` (wire doc inbound_email.md §b)."""

from __future__ import annotations

from collections.abc import Mapping
from email import policy
from email.parser import HeaderParser

from api.webhooks.parsers.email import read_email
from models.email_in.message import InboundEmail
from models.email_in.parse import parse_fields, parse_mime
from models.webhooks import WebhookPayloadError

WHAT = "SendGrid inbound parse webhook"


def _headers(block: str) -> list[tuple[str, str]]:
    parsed = HeaderParser(policy=policy.compat32).parsestr(block.lstrip())
    return [(name, str(value)) for name, value in parsed.items()]


def parse_sendgrid(fields: Mapping[str, str]) -> InboundEmail:
    raw = fields.get("email")
    if raw is not None:
        return read_email(lambda: parse_mime(raw.encode()), WHAT)
    missing = [
        problem
        for problem, present in (
            ("headers: field required", "headers" in fields),
            ("from: field required", bool(fields.get("from"))),
            ("text or html: field required", "text" in fields or "html" in fields),
        )
        if not present
    ]
    if missing:
        raise WebhookPayloadError(f"malformed {WHAT}: " + "; ".join(missing), missing)
    return read_email(
        lambda: parse_fields(
            headers=_headers(fields["headers"]),
            from_=fields["from"],
            to=[fields["to"]] if fields.get("to") else [],
            subject=fields.get("subject"),
            text=fields.get("text"),
            html=fields.get("html"),
        ),
        WHAT,
    )
