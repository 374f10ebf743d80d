"""Do-not-contact, in one place: whether leadflow may message a contact, and an operator's
explicit decision to set or lift it.

Who counts as the same person: the lead of the (channel, contact) asked about, and any lead of
the tenant whose phone or e-mail is the one that contact id carries (`models.identity`): a lead
who opted out on WhatsApp is not messaged by e-mail or the Cloud API at the same phone either.

Set by: a turn whose lead opted out (`RecordTurnInput.do_not_contact`, written by the record
step), a CRM webhook (api/webhooks/crm_inbound.py), an operator's PATCH of the lead or
`set_do_not_contact` here. Lifted only explicitly: a CRM that clears it, or an operator through
`set_do_not_contact` with a reason. Who set or lifted it and why is kept as a system entry in the
transcripts of the lead's conversations (a lead without a conversation has no transcript: the
reason then lives in the CRM sync run the change requests) — not in the lead's fields, which
the model reads and the CRMs receive."""

from __future__ import annotations

from typing import NamedTuple

from sqlmodel.ext.asyncio.session import AsyncSession

from models.common import Channel
from models.conversation import lead_id_for
from models.identity import contact_details, normalise_contact
from models.repo import conversations as conversation_repo
from models.repo import leads as lead_repo
from models.tables import Lead, utcnow

LIFT_ROUTE = "POST /api/v1/leads/{lead_id}/do-not-contact"


class DoNotContactChange(NamedTuple):
    lead: Lead
    changed: bool = False


async def do_not_contact_reason(
    session: AsyncSession, *, tenant_id: str, channel: Channel | str, contact: str
) -> str | None:
    """Why this contact must not be messaged (for a 409), or None when it may be.

    Raises `models.identity.ContactIdError` (a 422) for a contact id that is no address."""
    kind = Channel(channel)
    address = normalise_contact(kind, contact)
    details = contact_details(kind, address)
    lead = await lead_repo.find_do_not_contact_lead(
        session,
        tenant_id=tenant_id,
        lead_ids=(lead_id_for(tenant_id, kind, address),),
        channel=kind.value,
        address=address,
        phone=details.phone,
        email=details.email,
    )
    if lead is None:
        return None
    same = (
        "this contact"
        if (lead.channel, lead.address) == (kind.value, address)
        else f"the same person ({lead.channel} {lead.address})"
    )
    return (
        f"{same} is do-not-contact (lead {lead.id}: the lead opted out, or an operator or a CRM "
        f"set it); an operator can lift it with {LIFT_ROUTE.format(lead_id=lead.id)}"
    )


async def set_do_not_contact(
    session: AsyncSession,
    *,
    tenant_id: str,
    lead_id: str,
    do_not_contact: bool,
    by: str,
    reason: str,
) -> DoNotContactChange | None:
    """An operator sets or lifts the lead's do-not-contact: the flag and a new version (the CRM
    sync's), and a system entry in the transcripts of its conversations saying who and why, in
    one transaction. None for an unknown lead (or another tenant's); `changed` False when it
    already was so (nothing written, nothing to sync).

    The caller requests the CRM sync (`models.crm.request_crm_sync` with the lead's version) and,
    when setting it, closes the lead's running conversations. A running conversation learns of
    a lift on its next turn (its context reads the flag)."""
    lead = await lead_repo.get_lead(session, tenant_id=tenant_id, lead_id=lead_id)
    if lead is None:
        return None
    if lead.do_not_contact == do_not_contact:
        return DoNotContactChange(lead=lead)
    version = await lead_repo.write_do_not_contact(
        session, tenant_id=tenant_id, lead_id=lead_id, do_not_contact=do_not_contact
    )
    if version is not None:
        conversations = await lead_repo.conversations_of_lead(
            session, tenant_id=tenant_id, lead_id=lead_id
        )
        verb = "set" if do_not_contact else "lifted"
        await conversation_repo.add_system_entry(
            session,
            tenant_id=tenant_id,
            conversation_ids=[c.id for c in conversations],
            text=f"Do-not-contact {verb} by {by}: {reason}",
            dedupe_key=f"do-not-contact:{lead_id}:v{version}",
            at=utcnow(),
        )
    await session.commit()
    await session.refresh(lead)
    # None: another writer set the same value between our read and our write.
    return DoNotContactChange(lead=lead, changed=version is not None)


# ---- listing ---------------------------------------------------------------------------------

MAX_PAGE = 200


class LeadCursorError(LookupError):
    """A `cursor` whose lead is not the tenant's: erased since, or never one of its leads."""


class LeadFilter(NamedTuple):
    """What `GET /api/v1/leads` filters on; None means "either"."""

    quality: str | None = None
    source_job_id: str | None = None
    has_email: bool | None = None
    has_phone: bool | None = None
    do_not_contact: bool | None = None
    search: str | None = None


class LeadPage(NamedTuple):
    leads: list[Lead]
    next_cursor: str | None


# A cursor is the id of the previous page's last lead (ids are uuids, in either spelling): it
# needs no decoding, so a well-formed cursor is refused only when its lead is not the tenant's.
CURSOR_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"


async def list_leads(
    session: AsyncSession,
    *,
    tenant_id: str,
    where: LeadFilter,
    limit: int,
    cursor: str | None = None,
) -> LeadPage:
    """One page of the tenant's leads, newest first, and the cursor of the next page (None on
    the last). Raises `LeadCursorError` for a cursor that names no lead of the tenant (another
    tenant's, or one erased since: its position is lost, list again from the start)."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
    if cursor is not None and (
        await lead_repo.get_lead(session, tenant_id=tenant_id, lead_id=cursor) is None
    ):
        raise LeadCursorError("no lead at this cursor (erased since?); list from the start")
    search = (where.search or "").strip() or None
    # one more than asked: whether a next page exists, without a count over the tenant's leads
    rows = await lead_repo.list_leads(
        session,
        tenant_id=tenant_id,
        quality=where.quality,
        source_job_id=where.source_job_id,
        has_email=where.has_email,
        has_phone=where.has_phone,
        do_not_contact=where.do_not_contact,
        search=search,
        after_id=cursor,
        limit=limit + 1,
    )
    more = len(rows) > limit
    page = rows[:limit]
    return LeadPage(leads=page, next_cursor=page[-1].id if more else None)
