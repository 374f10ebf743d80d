"""The one shape of an inbound e-mail, whatever brought it (raw MIME from a mailbox or a
provider, or a provider's parsed fields): `InboundEmail`, with its kind and, for a bounce, the
delivery report's facts (`Bounce`)."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum

from pydantic import Field

from models.messages import Frozen

# A Message-ID is `<left@right>`; the angle brackets are kept (RFC 5322 §3.6.4), so ids read
# from any header or any provider field compare equal as plain strings.
_BRACKETED = re.compile(r"<([^<>\s]+)>")
_BARE = re.compile(r"^[^<>\s]+@[^<>\s]+$")
MAX_MESSAGE_ID_LENGTH = 500
"""Longer ids (none of ours, and no real client's) are not kept: they cannot thread."""


class MalformedEmail(ValueError):
    """The bytes or fields are not an e-mail leadflow can read (no headers, no sender)."""


class EmailKind(StrEnum):
    HUMAN = "human"
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"


class Bounce(Frozen):
    """The facts of a delivery status notification (RFC 3464), as far as the report has them."""

    recipient: str | None = Field(
        default=None, description="Final-Recipient (else Original-Recipient), lower-cased."
    )
    status: str | None = Field(default=None, description="X.Y.Z, e.g. 5.1.1.")
    action: str | None = Field(default=None, description="failed | delayed | delivered | …")
    hard: bool = Field(description="Permanent: a 5.x.x status (or a failure without a status).")
    diagnostic: str | None = Field(default=None, description="Diagnostic-Code, as the MTA said it.")
    original_message_id: str | None = Field(
        default=None, description="The Message-ID of the returned message (ours, if we sent it)."
    )

    def summary(self, limit: int = 500) -> str:
        """`status diagnostic`, what Lead.email_bounce keeps."""
        parts = [self.status or ("hard" if self.hard else "soft"), self.diagnostic or ""]
        return " ".join(part for part in parts if part)[:limit]


class InboundEmail(Frozen):
    from_address: str = Field(description="The sender's address as written (not lower-cased).")
    from_name: str | None = None
    to: tuple[str, ...] = ()
    subject: str = ""
    message_id: str = Field(
        description="Canonical `<id@host>`; a mail without one gets a digest of its content."
    )
    in_reply_to: str | None = None
    references: tuple[str, ...] = Field(default=(), description="Oldest first, canonical.")
    date: datetime | None = None
    text: str = Field(description="The plain-text body (HTML-only mail converted to text).")
    reply_text: str = Field(
        description="The new part only: quoted history and signature stripped (may be empty)."
    )
    kind: EmailKind = EmailKind.HUMAN
    kind_reason: str | None = Field(
        default=None, description="What made it an automatic reply or a bounce."
    )
    bounce: Bounce | None = None

    @property
    def thread_ids(self) -> tuple[str, ...]:
        """The ids this mail answers, nearest first: In-Reply-To, then References newest first."""
        ids = ([self.in_reply_to] if self.in_reply_to else []) + list(reversed(self.references))
        return tuple(dict.fromkeys(ids))

    @property
    def analysed_text(self) -> str:
        """What the conversation reads: the new part, or the whole text when stripping left
        nothing (a reply typed inside the quote is still the lead's words)."""
        return self.reply_text.strip() or self.text.strip()


def message_ids(value: str | None) -> tuple[str, ...]:
    """Every Message-ID in a header value (References holds several), canonical, in order."""
    if not value:
        return ()
    found = [f"<{m}>" for m in _BRACKETED.findall(value)]
    if not found:
        bare = value.strip()
        found = [f"<{bare}>"] if _BARE.match(bare) else []
    return tuple(i for i in dict.fromkeys(found) if len(i) <= MAX_MESSAGE_ID_LENGTH)


def canonical_message_id(value: str | None) -> str | None:
    """The first Message-ID in `value` as `<id@host>`, or None."""
    ids = message_ids(value)
    return ids[0] if ids else None
