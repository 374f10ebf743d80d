"""Bytes or provider fields -> `InboundEmail`.

`parse_mime` reads a whole message (a mailbox's RFC822, Mailgun's `body-mime`, SendGrid's
`email`); `parse_fields` rebuilds one from a provider's parsed fields and header list (Mailgun
`message-headers`, SendGrid `headers`, Postmark `Headers[]`). Both end in the same reading, so
a mail is classified, threaded and stripped alike whichever way it came."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr, parsedate_to_datetime

from models.email_in.classify import classify, delivery_report, header
from models.email_in.html_text import html_to_text
from models.email_in.message import (
    EmailKind,
    InboundEmail,
    MalformedEmail,
    canonical_message_id,
    message_ids,
)
from models.email_in.strip import reply_text

MISSING_ID_DOMAIN = "leadflow.missing-id"
# Rebuilt from fields, the body is ours: the provider's body headers would contradict it.
_BODY_HEADERS = frozenset({"content-type", "content-transfer-encoding", "mime-version"})


def _date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _part_text(part: Message) -> str:
    try:
        content = part.get_content()  # type: ignore[attr-defined]
    except (LookupError, UnicodeError, AttributeError):
        raw = part.get_payload(decode=True)
        content = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""
    return content if isinstance(content, str) else ""


def _body_text(msg: Message) -> str:
    if not isinstance(msg, EmailMessage):
        return ""
    plain = msg.get_body(preferencelist=("plain",))
    text = _part_text(plain).strip() if plain is not None else ""
    if text:
        return text
    # HTML-only mail, or an empty text part beside the HTML one (some clients send that).
    html = msg.get_body(preferencelist=("html",))
    return html_to_text(_part_text(html)) if html is not None else ""


def _digest_id(*parts: bytes | str) -> str:
    """A stand-in Message-ID for mail without one (Discourse hashes the raw mail too): stable,
    so a redelivery is still recognised as the same mail."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return f"<{digest.hexdigest()[:32]}@{MISSING_ID_DOMAIN}>"


def read_message(
    msg: Message, *, declared_type: str | None = None, fallback_id: str | None = None
) -> InboundEmail:
    """The `InboundEmail` of a parsed message object."""
    kind, reason = classify(msg, declared_type=declared_type)
    name, address = parseaddr(header(msg, "from"))
    address = address.strip()
    if kind is not EmailKind.BOUNCE:
        local, _, domain = address.rpartition("@")
        if not local or "." not in domain:
            raise MalformedEmail(f"From {header(msg, 'from')!r} has no e-mail address")
    text = _body_text(msg)
    subject = header(msg, "subject")
    date_header = header(msg, "date")
    message_id = canonical_message_id(header(msg, "message-id")) or fallback_id
    if message_id is None:
        message_id = _digest_id(address, date_header, subject, text)
    return InboundEmail(
        from_address=address,
        from_name=name.strip() or None,
        to=tuple(a for _, a in getaddresses([header(msg, "to")]) if "@" in a),
        subject=subject,
        message_id=message_id,
        in_reply_to=canonical_message_id(header(msg, "in-reply-to")),
        references=message_ids(header(msg, "references")),
        date=_date(date_header),
        text=text,
        reply_text=reply_text(text) if kind is EmailKind.HUMAN else "",
        kind=kind,
        kind_reason=reason,
        bounce=delivery_report(msg, text=text) if kind is EmailKind.BOUNCE else None,
    )


def parse_mime(raw: bytes) -> InboundEmail:
    """A whole RFC 5322 message. Raises `MalformedEmail` on bytes that are not one."""
    if not raw.strip():
        raise MalformedEmail("the message is empty")
    try:
        msg = BytesParser(policy=policy.default).parsebytes(raw)
    except Exception as exc:  # the parser is lenient; anything it raises is garbage
        raise MalformedEmail(f"not an e-mail message: {type(exc).__name__}") from exc
    if not msg.keys() or not header(msg, "from"):
        raise MalformedEmail("not an e-mail message: no From header")
    try:
        return read_message(msg, fallback_id=_digest_id(raw))
    except MalformedEmail:
        raise
    except Exception as exc:  # the stdlib's header parsers raise AttributeError & co on garbage
        raise MalformedEmail(f"unreadable e-mail: {type(exc).__name__}: {exc}") from exc


def parse_fields(
    *,
    headers: Iterable[tuple[str, str]],
    from_: str | None = None,
    to: Sequence[str] = (),
    subject: str | None = None,
    text: str | None = None,
    html: str | None = None,
    date: str | None = None,
    message_id: str | None = None,
) -> InboundEmail:
    """A mail from a provider's parsed fields. The header list wins over the convenience
    fields (they are copies of it), which fill in what the list lacks."""
    msg = EmailMessage()
    if text and text.strip():
        msg.set_content(text)
        if html:
            msg.add_alternative(html, subtype="html")
    elif html:
        msg.set_content(html, subtype="html")
    else:
        msg.set_content("")
    declared_type: str | None = None
    for name, value in headers:
        name = name.strip()
        value = " ".join(str(value).split())
        if not name or any(c in name for c in ": \t\r\n"):
            continue
        if name.lower() in _BODY_HEADERS:
            if name.lower() == "content-type":
                declared_type = value
            continue
        # One unparseable header (a provider's oddity) is not worth the mail; the stdlib's
        # header parsers raise assorted errors (AttributeError, IndexError, …) on garbage.
        with contextlib.suppress(Exception):
            msg[name] = value
    fills: dict[str, str | None] = {
        "From": from_,
        "To": ", ".join(to) if to else None,
        "Subject": subject,
        "Date": date,
        "Message-ID": message_id,
    }
    for name, filled in fills.items():
        if filled and name not in msg:
            with contextlib.suppress(Exception):  # as above
                msg[name] = " ".join(filled.split())
    if not header(msg, "from"):
        raise MalformedEmail("the mail has no sender (From)")
    try:
        return read_message(msg, declared_type=declared_type)
    except MalformedEmail:
        raise
    except Exception as exc:  # the stdlib's header parsers raise AttributeError & co on garbage
        raise MalformedEmail(f"unreadable e-mail: {type(exc).__name__}: {exc}") from exc
