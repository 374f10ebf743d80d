"""E-mail through SMTP (aiosmtplib): one connection per message, which is what a retried activity
wants (no half-dead pooled connection survives a failure).

Threading: `OutboundMessage.thread` carries what the inbound side knew about the lead's e-mail.
If it looks like a Message-ID (`<id@host>`), the reply sets In-Reply-To/References to it; otherwise
it is the subject of the lead's e-mail. Either way the reply's subject is "Re: <subject>", so mail
clients keep it in the lead's thread. With neither thread nor subject, a fresh message is sent."""

from __future__ import annotations

import hashlib
import logging
import re
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

import aiosmtplib

from activities.channels.base import not_configured, rejected, unavailable
from models.messages import OutboundMessage
from models.tenant import SmtpSettings, TenantSettings, channel_configured

NAME = "email"
SMTP_TIMEOUT_SECONDS = 30.0  # below the send activity's start-to-close timeout
DEFAULT_SUBJECT = "Your enquiry"

log = logging.getLogger(__name__)

_MESSAGE_ID_RE = re.compile(r"^<[^<>\s@]+@[^<>\s@]+>$")
_REPLY_PREFIX_RE = re.compile(r"^\s*(re|aw|sv|antw)\s*:", re.IGNORECASE)


def is_message_id(value: str | None) -> bool:
    return value is not None and _MESSAGE_ID_RE.match(value.strip()) is not None


def reply_subject(subject: str) -> str:
    subject = subject.strip() or DEFAULT_SUBJECT
    return subject if _REPLY_PREFIX_RE.match(subject) else f"Re: {subject}"


def message_id_for(idempotency_key: str, from_address: str) -> str:
    """Deterministic per idempotency key: a retried send carries the same Message-ID, so the
    receiving side can recognise the duplicate if the first attempt did get through."""
    domain = parseaddr(from_address)[1].rpartition("@")[2] or "leadflow.invalid"
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"


def build_email(message: OutboundMessage, smtp: SmtpSettings) -> EmailMessage:
    to_address = parseaddr(message.to)[1]
    if "@" not in to_address:
        raise rejected(NAME, f"{message.to!r} is not an e-mail address")
    thread = (message.thread or "").strip() or None
    in_reply_to = thread if is_message_id(thread) else None
    thread_subject = None if in_reply_to else thread
    if in_reply_to or thread_subject:
        subject = reply_subject(message.subject or thread_subject or "")
    else:
        subject = message.subject or DEFAULT_SUBJECT

    email = EmailMessage()
    email["From"] = smtp.from_address
    email["To"] = message.to
    email["Subject"] = subject
    email["Date"] = formatdate(localtime=False, usegmt=True)
    email["Message-ID"] = message_id_for(message.idempotency_key, smtp.from_address)
    if in_reply_to:
        email["In-Reply-To"] = in_reply_to
        email["References"] = in_reply_to
    email.set_content(message.text)
    return email


class SmtpChannel:
    name = NAME

    def configured(self, settings: TenantSettings) -> bool:
        # the one definition (models/tenant.py): the block is there with its required fields
        return channel_configured(settings, "smtp")  # the channel is e-mail, the block smtp

    async def send(self, message: OutboundMessage, settings: TenantSettings) -> str | None:
        smtp = settings.smtp
        if smtp is None:
            raise not_configured(NAME, "smtp")
        if smtp.username and smtp.password is None:
            raise not_configured(NAME, "smtp.password")
        email = build_email(message, smtp)
        where = f"{smtp.host}:{smtp.port}"
        try:
            errors, _ = await aiosmtplib.send(
                email,
                hostname=smtp.host,
                port=smtp.port,
                username=smtp.username or None,
                password=smtp.password.get_secret_value()
                if smtp.username and smtp.password
                else None,
                use_tls=smtp.use_tls,
                # Explicit False: aiosmtplib's default (None) upgrades opportunistically, which
                # would fail against servers with a self-signed certificate the tenant never chose.
                start_tls=smtp.starttls,
                timeout=SMTP_TIMEOUT_SECONDS,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise _from_response(exc.recipients[0], where) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise _from_response(exc, where) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            # Connection refused, timeouts, disconnects: the server may come back.
            raise unavailable(NAME, f"{type(exc).__name__} talking to {where}: {exc}") from exc
        refused = {rcpt: resp for rcpt, resp in errors.items() if resp.code >= 400}
        if refused:
            rcpt, resp = next(iter(refused.items()))
            detail = f"{where} refused {rcpt}: {resp.code} {resp.message}"
            if resp.code >= 500:
                raise rejected(NAME, detail)
            raise unavailable(NAME, detail)
        log.info("e-mail %s sent to %s via %s", email["Message-ID"], message.to, where)
        return str(email["Message-ID"])


def _from_response(exc: aiosmtplib.SMTPResponseException, where: str) -> Exception:
    """5xx is a permanent SMTP reply (bad recipient, auth refused); 4xx is transient (greylisting,
    mailbox busy), which is exactly the retry semantics SMTP defines (RFC 5321 §4.2.1)."""
    detail = f"{where} answered {exc.code} {exc.message}"
    if exc.code >= 500:
        return rejected(NAME, detail)
    return unavailable(NAME, detail)
