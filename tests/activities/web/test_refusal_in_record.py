"""A refused website lands in the enrichment record as its error, with the reason; nothing was
searched or fetched (the activity run as the worker runs it, on its real database)."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable

from temporalio.testing import ActivityEnvironment

from activities.llm.agent import Agent
from activities.llm.offline import offline_backend
from activities.web.activities import EnrichmentActivities
from activities.web.search import duckduckgo_provider
from models.db import Database
from models.enrichment import (
    EnrichmentStep,
    ProcessRecordInput,
    ProcessRecordResult,
    RecordOptions,
    RecordStatus,
    StoreRowsInput,
)
from models.netguard import guarded_client
from models.repo import enrichment as repo
from models.settings import Settings
from tests.conftest import make_tenant
from tests.fakes.web import FakeWeb

ROWS = [
    {"company": "Acme", "website": "file:///etc/passwd"},
    {"company": "Acme", "website": "gopher://127.0.0.1:6379/_INFO"},
    {"company": "Acme", "website": "localhost:8080"},
    {"company": "Acme", "website": "http://169.254.169.254/latest/meta-data/"},
]
REASONS = [
    "file: is not supported",
    "gopher: is not supported",
    "localhost is a local name",
    "169.254.169.254 is a cloud metadata address",
]


async def run_rows(
    db: Database, settings: Settings, rows: list[dict[str, str]], steps: tuple[EnrichmentStep, ...]
) -> tuple[str, list[ProcessRecordResult]]:
    """Store `rows` as a job of a new tenant and run process_record on each, in order."""
    tenant_id, _ = await make_tenant(db)
    job_id = uuid.uuid4().hex[:12]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    async with db.session() as session:
        await repo.create_job(
            session,
            job_id=job_id,
            tenant_id=tenant_id,
            filename="leads.csv",
            columns=list(rows[0]),
            total=len(rows),
            source=buffer.getvalue(),
            delimiter=",",
            concurrency=1,
            steps=[s.value for s in steps],
            playbook=None,
        )
    async with guarded_client(settings.ssrf_allowlist) as http:
        acts = EnrichmentActivities(
            db=db,
            settings=settings,
            http=http,
            agent=Agent(settings=settings, db=db, factories={"offline": offline_backend}),
            search_providers={"duckduckgo": duckduckgo_provider},
        )
        env = ActivityEnvironment()
        await env.run(acts.store_rows, StoreRowsInput(tenant_id=tenant_id, job_id=job_id))
        results = [
            await env.run(
                acts.process_record,
                ProcessRecordInput(
                    tenant_id=tenant_id,
                    job_id=job_id,
                    row_number=n,
                    options=RecordOptions(steps=steps),
                ),
            )
            for n in range(1, len(rows) + 1)
        ]
    return job_id, results


async def test_refused_websites_are_record_errors_with_the_reason(
    sqlite_db: Database, sqlite_url: str, settings_factory: Callable[..., Settings]
) -> None:
    steps = (EnrichmentStep.WEBSITE, EnrichmentStep.FETCH)
    with FakeWeb() as web:
        settings = settings_factory(sqlite_url, ssrf_allowlist=[], duckduckgo_url=web.search_url)
        job_id, results = await run_rows(sqlite_db, settings, ROWS, steps)
        for result, reason in zip(results, REASONS, strict=True):
            assert result.error is not None and reason in result.error, result
        async with sqlite_db.session() as session:
            for n, reason in enumerate(REASONS, start=1):
                record = await repo.get_record(session, job_id=job_id, row_number=n)
                assert record is not None
                assert record.error is not None and reason in record.error, record.error
        assert web.searches == []


async def test_a_fetched_row_reports_the_websites_host_for_the_runs_details(
    sqlite_db: Database, sqlite_url: str, settings_factory: Callable[..., Settings]
) -> None:
    steps = (EnrichmentStep.WEBSITE, EnrichmentStep.FETCH)
    with FakeWeb() as web:
        settings = settings_factory(
            sqlite_url, ssrf_allowlist=["127.0.0.1"], duckduckgo_url=web.search_url
        )
        _, (result,) = await run_rows(
            sqlite_db, settings, [{"company": "Acme", "website": web.site("acme")}], steps
        )
    assert result.status is RecordStatus.DONE, result
    assert result.website == "127.0.0.1"  # the host only, not the path
