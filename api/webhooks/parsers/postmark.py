"""Postmark inbound webhook (JSON) -> `InboundEmail`.

Postmark's `MessageID` is Postmark's own id, not the mail's: the RFC Message-ID, In-Reply-To and
References are read from `Headers[]` (wire doc inbound_email.md §b). Postmark's id only stands
in when the mail had no Message-ID, so a redelivery is still recognised."""

from __future__ import annotations

from email.utils import formataddr

from pydantic import Field

from api.webhooks.parsers import Loose, load_json, validate
from api.webhooks.parsers.email import read_email
from models.email_in.message import InboundEmail
from models.email_in.parse import parse_fields

WHAT = "Postmark inbound webhook"


class _Address(Loose):
    Email: str = ""
    Name: str = ""


class _Header(Loose):
    Name: str
    Value: str = ""


class PostmarkInbound(Loose):
    From: str = Field(min_length=3)
    FromName: str = ""
    FromFull: _Address | None = None
    To: str = ""
    Subject: str = ""
    MessageID: str = ""
    Date: str = ""
    TextBody: str = ""
    HtmlBody: str = ""
    Headers: list[_Header] = Field(default_factory=list)


def parse_postmark(body: bytes) -> InboundEmail:
    mail = validate(PostmarkInbound, load_json(body), WHAT)
    address = mail.FromFull.Email if mail.FromFull and mail.FromFull.Email else mail.From
    name = mail.FromFull.Name if mail.FromFull and mail.FromFull.Name else mail.FromName
    stand_in = f"<{mail.MessageID}@inbound.postmarkapp.com>" if mail.MessageID.strip() else None
    return read_email(
        lambda: parse_fields(
            headers=[(h.Name, h.Value) for h in mail.Headers],
            from_=formataddr((name, address)) if name else address,
            to=[mail.To] if mail.To else [],
            subject=mail.Subject,
            text=mail.TextBody,
            html=mail.HtmlBody,
            date=mail.Date or None,
            message_id=stand_in,
        ),
        WHAT,
    )
