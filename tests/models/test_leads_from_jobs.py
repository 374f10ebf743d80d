"""Leads from enriched rows (`lead_service.lead_from_enriched_row`) on SQLite and PostgreSQL:
created once and keyed like a conversation's lead, the same row again changes nothing, the
dedupe keys in their order (e-mail, phone, company domain), and the facts merged without
overwriting what the lead already has."""

from __future__ import annotations

import pytest
from sqlmodel import func, select

from models.agent import CompanyFacts
from models.common import Channel
from models.conversation import lead_id_for
from models.db import Database
from models.lead_service import JobLead, company_domain, lead_from_enriched_row
from models.repo import leads as lead_repo
from models.tables import Lead
from tests.conftest import make_tenant

pytestmark = pytest.mark.timeout(120)

ACME = CompanyFacts(
    company="Acme Trucks GmbH",
    summary="Acme sells and services trucks in Hamburg.",
    emails=("info@acme-trucks.de",),
    phones=("+49 40 1234567",),
    social_links=("https://www.linkedin.com/company/acme-trucks",),
)
ACME_SITE = "https://www.acme-trucks.de/"


async def enrich(
    db: Database,
    tenant_id: str,
    row: dict[str, str],
    *,
    job_id: str = "job-1",
    website: str | None = ACME_SITE,
    facts: CompanyFacts = ACME,
) -> JobLead | None:
    async with db.session() as session:
        return await lead_from_enriched_row(
            session, tenant_id=tenant_id, job_id=job_id, row=row, website=website, facts=facts
        )


async def lead(db: Database, tenant_id: str, lead_id: str) -> Lead:
    async with db.session() as session:
        found = await lead_repo.get_lead(session, tenant_id=tenant_id, lead_id=lead_id)
    assert found is not None
    return found


async def count(db: Database, tenant_id: str) -> int:
    async with db.session() as session:
        return int(
            (await session.exec(select(func.count()).where(Lead.tenant_id == tenant_id))).one()
        )


async def test_a_row_becomes_a_lead_once(db: Database) -> None:
    tenant, _ = await make_tenant(db)
    row = {
        "Company": "Acme",
        "E-mail": "Ana.Lima@Acme-Trucks.de",
        "First name": "Ana",
        "Last name": "Lima",
        "Phone": "+49 151 12345678",
    }
    first = await enrich(db, tenant, row)
    assert first is not None and first.created
    assert first.needs_crm_sync
    # keyed like the lead of an e-mail conversation with the same address
    assert first.lead_id == lead_id_for(tenant, Channel.EMAIL, "ana.lima@acme-trucks.de")
    made = await lead(db, tenant, first.lead_id)
    assert (made.channel, made.address) == ("email", "ana.lima@acme-trucks.de")
    assert made.name == "Ana Lima"
    assert made.email == "ana.lima@acme-trucks.de"
    assert made.phone == "+4915112345678"  # the row's own phone, E.164
    assert made.source_job_id == "job-1"
    assert made.company_domain == "acme-trucks.de"
    assert made.fields == {
        "company": "Acme Trucks GmbH",
        "website": ACME_SITE,
        "company_summary": "Acme sells and services trucks in Hamburg.",
        "social_links": "https://www.linkedin.com/company/acme-trucks",
    }

    again = await enrich(db, tenant, row)  # a retried step, or the same row again
    assert again == first._replace(created=False, changed=())
    assert not again.needs_crm_sync
    assert (await lead(db, tenant, first.lead_id)).version == made.version
    assert await count(db, tenant) == 1

    # another job with the same row records itself as the source; the CRMs learn nothing new
    later = await enrich(db, tenant, row, job_id="job-2")
    assert later is not None and later.changed == ("source_job_id",)
    assert not later.needs_crm_sync
    assert await count(db, tenant) == 1


async def test_dedupe_by_email_keeps_what_the_lead_has(db: Database) -> None:
    tenant, _ = await make_tenant(db)
    async with db.session() as session:
        existing = await lead_repo.create_lead(
            session,
            tenant_id=tenant,
            channel="waha",
            address="4915112345678@c.us",
            name="Ana (WhatsApp)",
            email="ana@acme-trucks.de",
            phone="+4915112345678",
        )
    result = await enrich(
        db,
        tenant,
        {"email": "ANA@acme-trucks.de", "contact name": "Someone Else", "phone": "+4930999999"},
    )
    assert result is not None and not result.created
    assert result.lead_id == existing.id
    merged = await lead(db, tenant, existing.id)
    assert merged.name == "Ana (WhatsApp)"  # what the lead said is kept
    assert merged.phone == "+4915112345678"
    assert merged.fields["company"] == "Acme Trucks GmbH"
    assert merged.source_job_id == "job-1"
    assert "fields.company" in result.changed
    assert await count(db, tenant) == 1


async def test_dedupe_by_phone_then_domain(db: Database) -> None:
    tenant, _ = await make_tenant(db)
    async with db.session() as session:
        by_phone = await lead_repo.create_lead(
            session, tenant_id=tenant, channel="whatsapp", address="4915112345678",
            phone="+4915112345678",
        )  # fmt: skip
    # written as people write it: the same E.164 number
    result = await enrich(db, tenant, {"company": "Acme", "mobile": "+49 (151) 123-45678"})
    assert result is not None and result.lead_id == by_phone.id and not result.created
    assert (await lead(db, tenant, by_phone.id)).company_domain == "acme-trucks.de"

    # a row with no e-mail or phone of its own is the lead of its company's domain
    same_company = await enrich(
        db, tenant, {"company": "Acme"}, website="http://acme-trucks.de/kontakt"
    )
    assert same_company is not None and same_company.lead_id == by_phone.id
    # a row with an e-mail of its own is a new person, even at a known company
    colleague = await enrich(db, tenant, {"company": "Acme", "email": "bo@acme-trucks.de"})
    assert colleague is not None and colleague.created and colleague.lead_id != by_phone.id
    assert await count(db, tenant) == 2


async def test_rows_without_a_person(db: Database) -> None:
    tenant, _ = await make_tenant(db)
    # no contact in the row: written to the company's own address from its website
    company = await enrich(db, tenant, {"company": "Acme"})
    assert company is not None and company.created
    made = await lead(db, tenant, company.lead_id)
    assert (made.channel, made.address) == ("email", "info@acme-trucks.de")
    assert made.phone == "+49401234567"  # the website's phone fills an empty one
    # a phone-only row is a WhatsApp lead
    phone_only = await enrich(
        db, tenant, {"phone": "+44 20 7946 0958"}, website=None, facts=CompanyFacts()
    )
    assert phone_only is not None
    assert phone_only.lead_id == lead_id_for(tenant, Channel.WHATSAPP, "442079460958")
    # nobody to write to: no lead
    assert (
        await enrich(db, tenant, {"company": "Ghost"}, website=None, facts=CompanyFacts()) is None
    )
    # a phone without a country code is not one, an e-mail that is no address neither
    assert (
        await enrich(
            db,
            tenant,
            {"phone": "0151 12345678", "email": "not-an-address"},
            website=None,
            facts=CompanyFacts(),
        )
        is None
    )
    assert await count(db, tenant) == 2


async def test_tenants_do_not_share_leads(db: Database) -> None:
    tenant_a, _ = await make_tenant(db)
    tenant_b, _ = await make_tenant(db)
    row = {"email": "ana@acme-trucks.de"}
    a = await enrich(db, tenant_a, row)
    b = await enrich(db, tenant_b, row)
    assert a is not None and b is not None and a.created and b.created
    assert a.lead_id != b.lead_id


def test_company_domain() -> None:
    assert company_domain("https://www.Acme.de/about?x=1") == "acme.de"
    assert company_domain("acme.de/kontakt") == "acme.de"
    assert company_domain("http://127.0.0.1:8080/acme/") == "127.0.0.1"
    assert company_domain(None) is None
    assert company_domain("") is None
    assert company_domain("http://[::1") is None
