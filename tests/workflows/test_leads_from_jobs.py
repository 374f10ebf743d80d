"""Leads from an enrichment job through the real stack: the EnrichmentJobWorkflow and its
activities on the Temporal dev server, the fixture web on loopback, a SQLite database, and
`GET /api/v1/leads?source_job=` listing what the job made. A second job with the same rows
updates the leads rather than adding any."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlmodel import func, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.llm.agent import Agent
from activities.llm.offline import offline_backend
from activities.web.activities import EnrichmentActivities
from activities.web.search import duckduckgo_provider
from api.app import create_app
from models.agent import CompanyFacts
from models.crm import crm_sync_workflow_id
from models.db import Database
from models.enrichment import (
    EnrichmentJobInput,
    EnrichmentStep,
    ProcessRecordInput,
    RecordOptions,
    RecordOutcome,
    workflow_id,
)
from models.repo import enrichment as repo
from models.repo import leads as lead_repo
from models.settings import Settings
from models.tables import Lead
from tests.conftest import make_tenant
from tests.fakes.web import FakeWeb
from tests.workflows.test_enrichment import csv_text, make_worker
from workflows.enrichment import EnrichmentJobWorkflow

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def web() -> Iterator[FakeWeb]:
    with FakeWeb() as fake:
        yield fake


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], sqlite_url: str, web: FakeWeb) -> Settings:
    return settings_factory(sqlite_url, ssrf_allowlist=["127.0.0.1"], duckduckgo_url=web.search_url)


@pytest.fixture
async def acts(sqlite_db: Database, settings: Settings) -> AsyncIterator[EnrichmentActivities]:
    async with httpx.AsyncClient() as http:
        yield EnrichmentActivities(
            db=sqlite_db,
            settings=settings,
            http=http,
            agent=Agent(settings=settings, db=sqlite_db, factories={"offline": offline_backend}),
            search_providers={"duckduckgo": duckduckgo_provider},
        )


@pytest.fixture
async def api(settings: Settings, temporal_client: Client) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        app.state.leadflow.temporal = temporal_client
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://leadflow.test") as http:
            yield http


async def run_job(
    client: Client, db: Database, task_queue: str, tenant_id: str, rows: list[dict[str, str]]
) -> str:
    job_id = uuid.uuid4().hex[:12]
    async with db.session() as session:
        await repo.create_job(
            session,
            job_id=job_id,
            tenant_id=tenant_id,
            filename="leads.csv",
            columns=list(rows[0]),
            total=len(rows),
            source=csv_text(rows),
            delimiter=",",
            concurrency=1,
            steps=[s.value for s in EnrichmentStep],
            playbook=None,
        )
    # one record at a time: the contact-less row comes after the lead of its company
    await client.execute_workflow(
        EnrichmentJobWorkflow.run,
        EnrichmentJobInput(
            tenant_id=tenant_id,
            job_id=job_id,
            total=len(rows),
            concurrency=1,
            records_per_run=500,
            options=RecordOptions(),
            record_heartbeat_timeout_seconds=30.0,
        ),
        id=workflow_id(tenant_id, job_id),
        task_queue=task_queue,
    )
    return job_id


async def listed(http: httpx.AsyncClient, key: str, **params: Any) -> list[dict[str, Any]]:
    response = await http.get(
        "/api/v1/leads", params=params, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200, response.text
    leads: list[dict[str, Any]] = response.json()["leads"]
    return leads


async def test_a_job_makes_leads_and_a_second_run_updates_them(
    temporal_client: Client,
    task_queue: str,
    sqlite_db: Database,
    acts: EnrichmentActivities,
    api: httpx.AsyncClient,
    web: FakeWeb,
) -> None:
    tenant_id, key = await make_tenant(sqlite_db)
    rows = [
        {
            "company": "Acme Freight",
            "website": web.site("acme-freight"),
            "email": "Ana@Acme-Freight.example.com",
            "contact name": "Ana Lima",
            "phone": "",
        },
        {
            "company": "Beta Haulage",
            "website": web.site("beta-haulage"),
            "email": "",
            "contact name": "Bo Chen",
            "phone": "+49 151 12345678",
        },
        # no person of its own: the same company's website enriches the first lead
        {
            "company": "Acme Freight",
            "website": web.site("acme-freight"),
            "email": "",
            "contact name": "",
            "phone": "",
        },
    ]
    async with make_worker(temporal_client, task_queue, acts):
        first_job = await run_job(temporal_client, sqlite_db, task_queue, tenant_id, rows)
        made = await listed(api, key, source_job=first_job)
        assert sorted(lead["email"] or lead["phone"] for lead in made) == [
            "+4915112345678",
            "ana@acme-freight.example.com",
        ]
        ana = next(lead for lead in made if lead["name"] == "Ana Lima")
        bo = next(lead for lead in made if lead["name"] == "Bo Chen")
        assert ana["channel"] == "email" and bo["channel"] == "whatsapp"
        assert ana["company"] == "Acme Freight" and bo["company"] == "Beta Haulage"
        assert ana["company_domain"] == "127.0.0.1"  # the fixture web's host
        assert bo["email"] is None and bo["phone"] == "+4915112345678"
        detail = (
            await api.get(f"/api/v1/leads/{ana['id']}", headers={"Authorization": f"Bearer {key}"})
        ).json()
        assert detail["fields"]["website"] == web.site("acme-freight")
        assert "logistics" in detail["fields"]["company_summary"]
        assert detail["fields"]["social_links"] == "https://linkedin.com/company/acme-freight"

        second_job = await run_job(temporal_client, sqlite_db, task_queue, tenant_id, rows)

    again = await listed(api, key, source_job=second_job)
    assert sorted(lead["id"] for lead in again) == sorted(lead["id"] for lead in made)
    assert await listed(api, key, source_job=first_job) == []  # the later job is the source
    async with sqlite_db.session() as session:
        total = (await session.exec(select(func.count()).where(Lead.tenant_id == tenant_id))).one()
    assert total == 2
    # an unchanged row changes nothing but the source: no version bump beyond that one write
    by_id = {lead["id"]: lead for lead in again}
    assert by_id[ana["id"]]["version"] == ana["version"] + 1


async def test_crm_sync_is_requested_for_a_change_and_again_by_a_retry(
    temporal_client: Client, sqlite_db: Database, acts: EnrichmentActivities
) -> None:
    """The record step asks for the lead's CRM sync when the row changed it; the same row again
    asks nothing, unless the step is a retry (its first attempt may have died between writing
    the lead and asking)."""
    tenant_id, _ = await make_tenant(sqlite_db)
    rows = [{"company": "Acme", "email": "ana@acme.example.com"}]
    job_id = uuid.uuid4().hex[:12]
    async with sqlite_db.session() as session:
        await repo.create_job(
            session, job_id=job_id, tenant_id=tenant_id, filename="leads.csv",
            columns=list(rows[0]), total=1, source=csv_text(rows), delimiter=",",
            concurrency=1, steps=[s.value for s in EnrichmentStep], playbook=None,
        )  # fmt: skip
        await repo.store_records(session, tenant_id=tenant_id, job_id=job_id, rows=rows)
        record = await repo.get_record(session, job_id=job_id, row_number=1)
    assert record is not None
    request = ProcessRecordInput(tenant_id=tenant_id, job_id=job_id, row_number=1)
    outcome = RecordOutcome(
        website="https://acme.example.com/",
        facts=CompanyFacts(company="Acme", summary="Acme moves freight."),
    )
    env = ActivityEnvironment(client=temporal_client)

    async def sync_requests(attempt: int) -> int:
        """Run the lead step as this attempt; how many sync requests the lead's workflow has
        received (no CRM worker runs here: the requests wait in its history)."""
        env.info = dataclasses.replace(env.info, attempt=attempt)
        await env.run(acts._lead_from_row, request, record, outcome)
        async with sqlite_db.session() as session:
            lead = await lead_repo.find_lead_by_email(
                session, tenant_id=tenant_id, email="ana@acme.example.com"
            )
        assert lead is not None
        handle = temporal_client.get_workflow_handle(crm_sync_workflow_id(tenant_id, lead.id))
        history = await handle.fetch_history()
        return sum(
            1
            for event in history.events
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        )

    assert await sync_requests(attempt=1) == 1  # the new lead
    assert await sync_requests(attempt=1) == 1  # the same row: nothing changed, nothing asked
    assert await sync_requests(attempt=2) == 2  # a retry asks again
