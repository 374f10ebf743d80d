"""Is an inbound mail a person's, an automatic reply, or a bounce? And a bounce's facts.

Rules from the wire doc (inbound_email.md §c): a delivery report is `multipart/report;
report-type=delivery-status` (matched case-insensitively: old MTAs shout) or holds a
`message/delivery-status` part, or comes from MAILER-DAEMON/postmaster. An automatic reply says
so in RFC 3834 `Auto-Submitted` (anything but `no`), `Precedence: bulk|junk|list|auto_reply`,
`X-Autoreply`/`X-Autorespond`-like headers, `X-Loop`, `X-Auto-Response-Suppress: All` (only
All: Outlook sets other values on ordinary mail), a no-reply sender, or an out-of-office subject
(Discourse's list, Dutch and German included). Neither is ever answered."""

from __future__ import annotations

import re
from email.message import Message
from email.utils import parseaddr

from models.email_in.message import Bounce, EmailKind, canonical_message_id

_BOUNCE_SENDER = re.compile(r"^(mailer[-_]?daemon|post[-_]?master)@", re.IGNORECASE)
_BOUNCE_SENDER_BARE = re.compile(r"^(mailer[-_]?daemon|post[-_]?master)$", re.IGNORECASE)
_NO_REPLY_SENDER = re.compile(r"^no[-_]?reply@", re.IGNORECASE)
_PRECEDENCE = re.compile(r"list|junk|bulk|auto_reply", re.IGNORECASE)
_AUTO_HEADER = re.compile(
    r"auto[-_]?(response|submitted|replied|reply|generated|respond)|holidayreply|machinegenerated",
    re.IGNORECASE,
)
_AUTO_SUBJECT = re.compile(
    r"\A\s*(Auto:|Automatic reply|Autosvar|Automatisk svar|Automatisch antwoord|"
    r"Abwesenheitsnotiz|Risposta Non al computer|Auto Response|Respuesta automática|Fuori sede|"
    r"Out of Office|Frånvaro|Réponse automatique|Automatische Antwort)",
    re.IGNORECASE,
)
# Headers whose name alone is not a verdict (Auto-Submitted and the suppress header are read
# for their values below).
_NOT_SCANNED = frozenset({"x-auto-response-suppress", "auto-submitted"})

# In a report flattened to text (a provider's parsed fields), the per-recipient fields.
_TEXT_FIELDS = {
    "final-recipient": re.compile(r"^\s*Final-Recipient:\s*(.+)$", re.I | re.M),
    "original-recipient": re.compile(r"^\s*Original-Recipient:\s*(.+)$", re.I | re.M),
    "status": re.compile(r"^\s*Status:\s*([245]\.\d{1,3}\.\d{1,3})", re.I | re.M),
    "action": re.compile(r"^\s*Action:\s*(\S+)", re.I | re.M),
    "diagnostic-code": re.compile(r"^\s*Diagnostic-Code:\s*(.+)$", re.I | re.M),
    "message-id": re.compile(r"^\s*Message-ID:\s*(<[^<>\s]+>)", re.I | re.M),
}
_STATUS = re.compile(r"\b([245])\.\d{1,3}\.\d{1,3}\b")


def header(msg: Message, name: str) -> str:
    """A header's value as text, unfolded; "" when absent. A header the strict policy cannot
    parse (the stdlib raises AttributeError, IndexError, … on some garbage) is read raw rather
    than failing the whole mail."""
    try:
        value = msg.get(name)
    except Exception:
        raw = {k.lower(): v for k, v in msg.raw_items()}  # unparsed: cannot fail
        value = raw.get(name.lower())
    return " ".join(str(value).split()) if value is not None else ""


def _content_type(msg: Message, declared: str | None) -> tuple[str, str]:
    """(media type, report-type), lower-cased; `declared` is the provider's Content-Type when
    the message object was rebuilt from parsed fields."""
    if declared:
        holder = Message()
        holder["content-type"] = declared
        msg = holder
    report = msg.get_param("report-type", header="content-type")
    return msg.get_content_type().lower(), str(report or "").strip().lower()


def _has_part(msg: Message, content_type: str) -> bool:
    return any(part.get_content_type().lower() == content_type for part in msg.walk())


def classify(msg: Message, *, declared_type: str | None = None) -> tuple[EmailKind, str | None]:
    """The kind of `msg` and what made it so (None for a person's mail)."""
    media, report = _content_type(msg, declared_type)
    if media == "multipart/report" and report == "delivery-status":
        return EmailKind.BOUNCE, "multipart/report; report-type=delivery-status"
    if _has_part(msg, "message/delivery-status"):
        return EmailKind.BOUNCE, "a message/delivery-status part"
    sender = parseaddr(header(msg, "from"))[1].strip()
    if _BOUNCE_SENDER.match(sender) or _BOUNCE_SENDER_BARE.match(sender):
        return EmailKind.BOUNCE, f"sent by {sender.partition('@')[0]}"

    auto_submitted = header(msg, "auto-submitted").lower()
    if auto_submitted and not auto_submitted.startswith("no"):
        return EmailKind.AUTO_REPLY, f"Auto-Submitted: {auto_submitted}"
    precedence = header(msg, "precedence")
    if _PRECEDENCE.search(precedence):
        return EmailKind.AUTO_REPLY, f"Precedence: {precedence}"
    if re.search(r"yes|true", header(msg, "x-loop"), re.IGNORECASE):
        return EmailKind.AUTO_REPLY, "X-Loop"
    if header(msg, "x-auto-response-suppress").lower() == "all":
        return EmailKind.AUTO_REPLY, "X-Auto-Response-Suppress: All"
    for name in msg.keys():
        if name.lower() not in _NOT_SCANNED and _AUTO_HEADER.search(name):
            return EmailKind.AUTO_REPLY, f"header {name}"
    if _NO_REPLY_SENDER.match(sender):
        return EmailKind.AUTO_REPLY, "a no-reply sender"
    subject = header(msg, "subject")
    if _AUTO_SUBJECT.match(subject):
        return EmailKind.AUTO_REPLY, f"subject {subject[:60]!r}"
    return EmailKind.HUMAN, None


def _address(field: str) -> str | None:
    """`rfc822; user@example.com` -> `user@example.com` (lower-cased)."""
    _, _, value = field.partition(";")
    address = (value or field).strip().strip("<>").strip()
    return address.lower() if "@" in address else None


def _bounce_of(fields: dict[str, str], original_message_id: str | None) -> Bounce:
    status = fields.get("status")
    action = (fields.get("action") or "").lower() or None
    status_class = _STATUS.search(status or "")
    diagnostic = fields.get("diagnostic-code")
    if status_class is None and diagnostic:
        status_class = _STATUS.search(diagnostic)
        status = status or (status_class.group(0) if status_class else None)
    if status_class is not None:
        hard = status_class.group(1) == "5"
    else:
        # No status at all: a failure is taken as permanent, a delay is not (Mailman's reading).
        hard = action is not None and action.startswith("fail")
    recipient = _address(fields.get("final-recipient", "")) or _address(
        fields.get("original-recipient", "")
    )
    return Bounce(
        recipient=recipient,
        status=status,
        action=action,
        hard=hard,
        diagnostic=" ".join(diagnostic.split()) if diagnostic else None,
        original_message_id=original_message_id,
    )


def _returned_message_id(msg: Message) -> str | None:
    """The Message-ID of the returned message (message/rfc822) or its headers
    (text/rfc822-headers)."""
    for part in msg.walk():
        kind = part.get_content_type().lower()
        if kind == "message/rfc822":
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, Message):
                found = canonical_message_id(header(inner, "message-id"))
                if found:
                    return found
        elif kind == "text/rfc822-headers":
            raw = part.get_payload(decode=True)
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")
            match = _TEXT_FIELDS["message-id"].search(text)
            if match:
                return canonical_message_id(match.group(1))
    return None


def delivery_report(msg: Message, *, text: str = "") -> Bounce:
    """The bounce facts: from the first failed (else first) recipient block of the
    message/delivery-status part; a report without one (a provider's flattened fields, an MTA
    writing prose) is read from `text` as far as it goes."""
    original = _returned_message_id(msg)
    blocks: list[dict[str, str]] = []
    for part in msg.walk():
        if part.get_content_type().lower() != "message/delivery-status":
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            # The first block is per-message (Reporting-MTA), the rest per recipient.
            for block in payload:
                if isinstance(block, Message):
                    # raw: the report's fields are plain text, no parsing policy needed
                    blocks.append({k.lower(): str(v).strip() for k, v in block.raw_items()})
    recipients = [b for b in blocks if "final-recipient" in b or "original-recipient" in b]
    if recipients:
        failed = [b for b in recipients if b.get("action", "").lower().startswith("fail")]
        return _bounce_of((failed or recipients)[0], original)
    found = {
        name: m.group(1).strip() for name, rx in _TEXT_FIELDS.items() if (m := rx.search(text))
    }
    if original is None and "message-id" in found:
        original = canonical_message_id(found["message-id"])
    if "status" not in found and "action" not in found:
        # Prose only ("Undelivered Mail Returned to Sender"): an unknown status is taken as
        # soft, so nothing is marked on a guess.
        return Bounce(
            recipient=_address(found.get("final-recipient", "")),
            hard=False,
            diagnostic=found.get("diagnostic-code"),
            original_message_id=original,
        )
    return _bounce_of(found, original)
