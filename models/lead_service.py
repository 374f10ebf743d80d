"""The leads domain's rules: do-not-contact (below), the list the API pages through
(`list_leads`), and leads made from enrichment jobs' rows (`lead_from_enriched_row`).

Do-not-contact, in one place: whether leadflow may message a contact, and an operator's
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

import re
from collections.abc import AsyncIterator, Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from sqlmodel.ext.asyncio.session import AsyncSession

from models.agent import CompanyFacts
from models.common import Channel
from models.conversation import lead_id_for
from models.csv_intake import identifying_columns
from models.identity import ContactIdError, contact_details, normalise_contact, phone_e164
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
    tags: tuple[str, ...] = ()
    """Leads carrying every one of these tags (models/tags.py)."""
    stage: str | None = None
    """Leads with a conversation in this stage (their status)."""


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
        tags=tuple(dict.fromkeys(where.tags)),
        stage=where.stage,
        after_id=cursor,
        limit=limit + 1,
    )
    more = len(rows) > limit
    page = rows[:limit]
    return LeadPage(leads=page, next_cursor=page[-1].id if more else None)


async def iter_leads(
    session: AsyncSession, *, tenant_id: str, where: LeadFilter
) -> AsyncIterator[Lead]:
    """Every lead `where` selects, newest first, a page at a time (the CSV export). A lead
    erased while the export runs ends it at that lead: its position is gone (a rare, partial
    export is better than one that repeats or skips leads)."""
    cursor: str | None = None
    while True:
        try:
            page = await list_leads(
                session, tenant_id=tenant_id, where=where, limit=MAX_PAGE, cursor=cursor
            )
        except LeadCursorError:
            return
        for lead in page.leads:
            yield lead
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


# ---- leads from enrichment jobs ---------------------------------------------------------------

# A CSV column is the lead's phone or the person's name when its header, lower-cased with
# everything but letters and digits removed, is one of these (`name` alone is the company's:
# models/csv_intake.py).
PHONE_COLUMNS = frozenset(
    {"phone", "phonenumber", "telephone", "tel", "mobile", "mobilephone", "cell", "whatsapp",
     "telefon", "telefono", "handy"}
)  # fmt: skip
NAME_COLUMNS = frozenset({"contactname", "fullname", "contact", "person", "personname"})
FIRST_NAME_COLUMNS = frozenset({"firstname", "givenname", "vorname"})
LAST_NAME_COLUMNS = frozenset({"lastname", "surname", "familyname", "nachname"})


class JobLead(NamedTuple):
    """What an enriched row did to the tenant's leads."""

    lead_id: str
    version: int
    created: bool
    changed: tuple[str, ...]
    """What changed (`update_lead`'s keys); empty when the row told nothing new."""

    @property
    def needs_crm_sync(self) -> bool:
        # The source job is leadflow's bookkeeping: a row that only re-recorded it tells the
        # CRMs nothing. (Enrichment has always asked for the sync of a lead it changed, with or
        # without a CRM of the tenant's: the sync records the built-in lead table's link too.)
        return self.created or any(key != "source_job_id" for key in self.changed)


def _header(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _column(row: Mapping[str, str], names: frozenset[str]) -> str | None:
    for key, value in row.items():
        if _header(key) in names and value.strip():
            return value.strip()
    return None


def company_domain(url: str | None) -> str | None:
    """A company website's host without `www.` (`https://www.acme.de/about` -> `acme.de`)."""
    if not url:
        return None
    candidate = url if "//" in url else f"//{url}"
    try:
        host = urlsplit(candidate).hostname
    except ValueError:
        return None
    return (host or "").removeprefix("www.")[:255] or None


def _email(value: str | None) -> str | None:
    if not value:
        return None
    try:
        details = contact_details(Channel.EMAIL, value)
    except ContactIdError:
        return None
    return details.email


def _row_person(row: Mapping[str, str]) -> str | None:
    full = _column(row, NAME_COLUMNS)
    if full:
        return full[:200]
    parts = [_column(row, FIRST_NAME_COLUMNS), _column(row, LAST_NAME_COLUMNS)]
    joined = " ".join(p for p in parts if p)
    return joined[:200] or None


async def lead_from_enriched_row(
    session: AsyncSession,
    *,
    tenant_id: str,
    job_id: str,
    row: Mapping[str, str],
    website: str | None,
    facts: CompanyFacts,
) -> JobLead | None:
    """Make the enriched CSV row a lead of the tenant, or merge it into the lead it already is;
    None when the row names nobody leadflow could write to.

    The same lead is, in this order: the lead with the row's e-mail; the lead with the row's
    phone (E.164; a phone without a country code is not one); and, for a row with neither, the
    lead of its company's domain (the website's host). A row's own e-mail or phone that no lead
    has is a new person, even at a known company. A new lead is keyed like a conversation's
    (`lead_id_for` of its e-mail, else its WhatsApp number; a row without either is written to
    the address its company's website gives), so a later conversation with it finds it, and a
    retried step finds the row it inserted.

    Merged: the company facts (company, website, summary, social links) into the lead's
    fields, the domain, the source job, and the name, e-mail and phone where the lead has none
    (what a lead said or an operator typed is never overwritten by a CSV). Idempotent: the
    same row again changes nothing. Committed."""
    columns = identifying_columns(list(row))
    email = _email(row.get(columns.email or "", ""))
    raw_phone = _column(row, PHONE_COLUMNS)
    phone = phone_e164(raw_phone) if raw_phone else None
    domain = company_domain(website)
    company = facts.company or (row.get(columns.company or "") or "").strip() or None
    name = _row_person(row)

    lead: Lead | None = None
    if email:
        lead = await lead_repo.find_lead_by_email(session, tenant_id=tenant_id, email=email)
    if lead is None and phone:
        lead = await lead_repo.find_lead_by_phone(session, tenant_id=tenant_id, phone=phone)
    if lead is None and not email and not phone and domain:
        lead = await lead_repo.find_lead_by_company_domain(
            session, tenant_id=tenant_id, domain=domain
        )
    site_phone = next((p for p in map(phone_e164, facts.phones) if p), None)
    created = False
    if lead is None:
        # Whom to write to: the row's person, else the company's own address.
        address_email = email or (None if phone else _email(next(iter(facts.emails), None)))
        if address_email:
            channel, address = Channel.EMAIL, normalise_contact(Channel.EMAIL, address_email)
        elif phone or site_phone:
            number = phone or site_phone or ""
            channel, address = Channel.WHATSAPP, number.removeprefix("+")
        else:
            return None
        lead, created = await lead_repo.insert_lead_once(
            session,
            lead_id=lead_id_for(tenant_id, channel, address),
            tenant_id=tenant_id,
            channel=channel.value,
            address=address,
            name=name,
            email=address_email,
            phone=phone,
        )
    changes: dict[str, Any] = {"source_job_id": job_id}
    for key, value in (
        ("fields.company", company),
        ("fields.website", website),
        ("fields.company_summary", facts.summary),
        # one string, as the CRMs' field mappings take scalars
        ("fields.social_links", " ".join(facts.social_links) or None),
        ("company_domain", domain),
    ):
        if value:
            changes[key] = value
    for key, value in (
        ("name", name),
        ("email", email),
        ("phone", phone or site_phone),
    ):
        if value and not getattr(lead, key):
            changes[key] = value
    applied = await lead_repo.update_lead(session, lead=lead, changes=changes)
    return JobLead(
        lead_id=lead.id,
        version=lead.version,
        created=created,
        changed=tuple(sorted(applied)),
    )
