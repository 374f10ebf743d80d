"""E-mail through SMTP (aiosmtplib): one connection per message, which is what a retried activity
wants (no half-dead pooled connection survives a failure).

Threading: `OutboundMessage.thread` carries what the inbound side knew about the lead's e-mail.
If it looks like a Message-ID (`<id@host>`), the reply sets In-Reply-To/References to it; otherwise
it is the subject of the lead's e-mail. Either way the reply's subject is "Re: <subject>", so mail
clients keep it in the lead's thread. With neither thread nor subject, a fresh message is sent.

Campaign mail (`OutboundMessage.campaign_id` set) also carries `Auto-Submitted: auto-generated`
and, when the channel was given the deployment's `UnsubscribeLinks` (models/unsubscribe.py),
`List-Unsubscribe` with one-click `List-Unsubscribe-Post` (`campaign_headers`). Any other mail
is sent exactly as before."""

from __future__ import annotations

import hashlib
import logging
import re
from email.headerregistry import BaseHeader, UnstructuredHeader
from email.message import EmailMessage
from email.policy import Policy
from email.utils import formatdate, parseaddr

import aiosmtplib
import httpx

from activities.channels.base import not_configured, rejected, unavailable
from models.common import Channel
from models.identity import ContactIdError, normalise_contact
from models.messages import OutboundMessage
from models.settings import get_settings
from models.tenant import SmtpSettings, TenantSettings, channel_configured
from models.unsubscribe import ONE_CLICK_BODY, Unsubscribe, UnsubscribeLinks

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


# RFC 5322 §2.1.1: a line is at most 998 characters (78 is a SHOULD, for readability).
MAX_LINE_LENGTH = 998
AUTO_SUBMITTED = "auto-generated"


class _UnfoldedHeader(UnstructuredHeader, BaseHeader):
    """A header written on one line, as it is. `List-Unsubscribe` holds a URL longer than 78
    characters, and the email package's folding (aiosmtplib flattens with `policy.SMTP`) has
    no space to fold at, so it rewrites the value as RFC 2047 encoded words, which no mail
    client or mailbox provider reads as a URL. Used only for ASCII values leadflow built
    (`campaign_headers` checks the length)."""

    def fold(self, *, policy: Policy) -> str:
        return f"{self.name}: {self}{policy.linesep}"


def campaign_headers(
    message: OutboundMessage, to_address: str, links: UnsubscribeLinks | None
) -> list[tuple[str, str]]:
    """The headers campaign mail carries beyond any other mail; none without a campaign.

    `Auto-Submitted: auto-generated` (RFC 3834 §5: made by an automatic process; leadflow's
    campaign mails are, the first one and every answer the agent writes after it — its answers
    carry on a sales conversation and are marked like the rest rather than `auto-replied`, the
    mark of vacation notices and other responders). RFC 3834 §2 asks automatic responders not
    to answer a message whose Auto-Submitted is anything but "no", so responders that follow it
    send no vacation or out-of-office notice to a campaign, which leadflow would only have to
    recognise and drop (a mail loop between two automatons is the failure this prevents). A
    person's reply is unaffected. Mail that is not a campaign's is a conversation a person
    started and keeps no such mark.

    `List-Unsubscribe: <link>` (RFC 2369) and, when the link qualifies (https, see
    models/unsubscribe.py), `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058):
    the mailbox provider shows an unsubscribe button that POSTs to the link. No `mailto:` form:
    leadflow would have to read and act on mail to such an address, which it does not. Both
    must be covered by the DKIM signature of the relay that signs (`h=…:list-unsubscribe:
    list-unsubscribe-post`, RFC 8058 §4) — the relay's configuration, not leadflow's. Without
    `links` (a channel built without the deployment's settings) no link is sent: a token
    signed with a key the API does not have would be a link that answers 404."""
    if message.campaign_id is None:
        return []
    headers = [("Auto-Submitted", AUTO_SUBMITTED)]
    if links is None:
        return headers
    try:
        contact = normalise_contact(Channel.EMAIL, to_address)
    except ContactIdError as exc:
        raise rejected(NAME, f"{to_address!r} is not an e-mail address: {exc}") from exc
    url = links.url(Unsubscribe(message.tenant_id, contact, message.campaign_id))
    value = f"<{url}>"
    if len("List-Unsubscribe: ") + len(value) > MAX_LINE_LENGTH:
        # Only with an absurdly long LEADFLOW_PUBLIC_URL: never campaign mail without the link.
        raise rejected(
            NAME,
            f"the unsubscribe link would be {len(url)} characters, longer than a mail header "
            f"line may be; shorten LEADFLOW_PUBLIC_URL ({links.base_url})",
        )
    headers.append(("List-Unsubscribe", value))
    if links.one_click:
        headers.append(("List-Unsubscribe-Post", ONE_CLICK_BODY))
    return headers


def build_email(
    message: OutboundMessage, smtp: SmtpSettings, unsubscribe: UnsubscribeLinks | None = None
) -> EmailMessage:
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
    for name, value in campaign_headers(message, to_address, unsubscribe):
        email[name] = _UnfoldedHeader(name, value) if name == "List-Unsubscribe" else value
    email.set_content(message.text)
    return email


class SmtpChannel:
    """`unsubscribe`: the deployment's link maker; campaign mail carries List-Unsubscribe only
    with it (see `campaign_headers`). `SmtpChannel()` sends no link."""

    name = NAME

    def __init__(self, unsubscribe: UnsubscribeLinks | None = None) -> None:
        self.unsubscribe = unsubscribe

    @classmethod
    def for_worker(cls, _http: httpx.AsyncClient) -> SmtpChannel:
        """The built-in plugin's factory (activities/plugin.py): links to this deployment's API,
        signed with its secret key. A channel factory is given only the HTTP client, so the
        process's settings are read here: `leadflow worker` and `up`'s workers build theirs
        from the same environment (`LEADFLOW_PUBLIC_URL`, `LEADFLOW_SECRET_KEY`)."""
        return cls(UnsubscribeLinks.from_settings(get_settings()))

    def configured(self, settings: TenantSettings) -> bool:
        # the one definition (models/tenant.py): the block is there with its required fields
        return channel_configured(settings, "smtp")  # the channel is e-mail, the block smtp

    async def send(self, message: OutboundMessage, settings: TenantSettings) -> str | None:
        smtp = settings.smtp
        if smtp is None:
            raise not_configured(NAME, "smtp")
        if smtp.username and smtp.password is None:
            raise not_configured(NAME, "smtp.password")
        email = build_email(message, smtp, self.unsubscribe)
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
