"""Routing an inbound e-mail: the one place that decides what a mail means for leadflow.

Every way mail comes in ends here (the Mailgun, SendGrid, Postmark and leadflow-JSON webhooks,
the IMAP mailbox reader), and so does every send's record of its Message-ID (`record_sent`,
called by the channel activities after a successful SMTP send)."""

from __future__ import annotations

from datetime import datetime
from email.utils import parseaddr

from sqlmodel.ext.asyncio.session import AsyncSession

from models.common import Channel
from models.email_in.message import (
    MAX_MESSAGE_ID_LENGTH,
    EmailKind,
    InboundEmail,
    canonical_message_id,
)
from models.identity import ContactIdError, normalise_contact
from models.messages import InboundMessage
from models.repo import email_threads as threads_repo
from models.webhooks import ParsedWebhook


def email_contact(address: str) -> str | None:
    """The e-mail conversation key of an address (`Name <a@b>` or `a@b`): its normalised form,
    as e-mail conversations and leads are keyed (models/identity.py); None when it cannot be
    anyone's id (too long, control characters)."""
    bare = parseaddr(address)[1] or address
    try:
        return normalise_contact(Channel.EMAIL, bare)
    except ContactIdError:
        return None


async def record_sent(
    session: AsyncSession,
    *,
    tenant_id: str,
    message_id: str,
    to: str,
    from_address: str,
    conversation_id: str | None,
    campaign_id: str | None,
    sent_at: datetime,
) -> bool:
    """Remember the Message-ID of a mail leadflow sent to a lead, so the lead's reply threads
    into this conversation. Idempotent (a retried send records once); commits. False when
    `message_id` is not one that can be kept (not `<id@host>`, or too long) or `to` is no
    usable address."""
    canonical = canonical_message_id(message_id)
    contact = email_contact(to)
    if canonical is None or len(canonical) > MAX_MESSAGE_ID_LENGTH or contact is None:
        return False
    await threads_repo.record_sent(
        session,
        tenant_id=tenant_id,
        message_id=canonical,
        contact=contact,
        from_address=(parseaddr(from_address)[1] or from_address).strip().lower(),
        conversation_id=conversation_id,
        campaign_id=campaign_id,
        sent_at=sent_at,
    )
    return True


async def route_email(
    session: AsyncSession,
    *,
    tenant_id: str,
    email: InboundEmail,
    received_at: datetime,
    source: str,
) -> ParsedWebhook:
    """What `email` means for the tenant's conversations.

    - a person's mail: one InboundMessage (channel e-mail, provider_message_id = its
      Message-ID, text = the reply without quotes and signature, or the whole text when that
      leaves nothing). Its contact is the address of the conversation whose Message-ID it names
      in In-Reply-To/References (the address we wrote to, whatever address answers), else its
      From address. Its thread is its own Message-ID, so leadflow's answer carries In-Reply-To.
    - an automatic reply: ignored with the reason, never answered.
    - a bounce: never answered. A hard one (5.x.x) marks every lead of the tenant with the
      bounced address (the address our returned mail went to, and the report's recipient);
      a soft one (4.x.x, delayed) is ignored with the reason.
    - our own mail (a Message-ID we sent, or a sender address we send from): ignored.
    - a sender address that cannot be a contact id (over 320 characters): ignored.

    `source` names the way it came (`mailgun`, `imap:INBOX`, …) in the reasons.
    Side effects (a bounce's marks) are committed in `session` before this returns, so the
    caller has nothing to commit (and must not hold uncommitted work of its own in it). The
    caller delivers the result (webhooks: api.webhooks.common.dispatch; duplicates of a
    Message-ID are dropped there, by the inbox, and by the workflow)."""
    label = f"e-mail {email.message_id} via {source}"
    if email.kind is EmailKind.BOUNCE:
        return await _bounce(session, tenant_id=tenant_id, email=email, at=received_at, label=label)
    if email.kind is EmailKind.AUTO_REPLY:
        return ParsedWebhook.ignore(
            f"{label}: an automatic reply ({email.kind_reason}); not answered"
        )
    ours = await threads_repo.sent_with_ids(
        session, tenant_id=tenant_id, message_ids=[email.message_id, *email.thread_ids]
    )
    if email.message_id in ours:
        return ParsedWebhook.ignore(f"{label}: a mail leadflow sent; not answered")
    sender = email.from_address.strip().lower()
    if await threads_repo.is_our_address(session, tenant_id=tenant_id, address=sender):
        return ParsedWebhook.ignore(f"{label}: sent from leadflow's own address; not answered")
    thread = next((ours[i] for i in email.thread_ids if i in ours), None)
    contact = thread.contact if thread is not None else email_contact(email.from_address)
    if contact is None:
        return ParsedWebhook.ignore(f"{label}: the sender's address is not usable")
    text = email.analysed_text
    if not text:
        return ParsedWebhook.ignore(f"{label}: empty body")
    return ParsedWebhook(
        messages=(
            InboundMessage(
                tenant_id=tenant_id,
                channel=Channel.EMAIL,
                contact=contact,
                provider_message_id=email.message_id,
                text=text,
                sent_at=email.date or received_at,
                contact_name=email.from_name,
                thread=email.message_id,
                subject=email.subject or None,
            ),
        )
    )


async def _bounce(
    session: AsyncSession, *, tenant_id: str, email: InboundEmail, at: datetime, label: str
) -> ParsedWebhook:
    bounce = email.bounce
    status = (bounce.status if bounce else None) or "no status"
    if bounce is None or not bounce.hard:
        return ParsedWebhook.ignore(f"{label}: a soft bounce ({status}); not answered")
    addresses: list[str] = []
    if bounce.original_message_id:
        sent = await threads_repo.sent_with_ids(
            session, tenant_id=tenant_id, message_ids=[bounce.original_message_id]
        )
        if bounce.original_message_id in sent:
            addresses.append(sent[bounce.original_message_id].contact)
    if bounce.recipient:
        addresses.append(bounce.recipient)
    if not addresses:
        return ParsedWebhook.ignore(f"{label}: a hard bounce ({status}) naming no recipient")
    marked = 0
    for address in dict.fromkeys(a.lower() for a in addresses):
        marked += await threads_repo.mark_leads_bounced(
            session, tenant_id=tenant_id, address=address, at=at, bounce=bounce.summary()
        )
    await session.commit()
    return ParsedWebhook.ignore(
        f"{label}: a hard bounce ({status}); {marked} lead(s) marked, not answered"
    )
