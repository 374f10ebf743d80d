"""Enrichment repository functions, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from models.agent import CompanyFacts, TokenUsage
from models.db import Database
from models.enrichment import JobStatus, RecordOutcome, RecordStatus, SiteResearch
from models.enrichment_tables import EnrichmentRecord
from models.repo import enrichment as repo
from tests.conftest import make_tenant

ROWS = [{"company": f"Company {i}", "website": f"c{i}.example.com"} for i in range(1, 8)]


async def _job(db: Database, tenant_id: str, job_id: str = "job-1") -> None:
    async with db.session() as session:
        await repo.create_job(
            session,
            job_id=job_id,
            tenant_id=tenant_id,
            filename="leads.csv",
            columns=["company", "website"],
            total=len(ROWS),
            source="company,website\n...",
            delimiter=",",
            concurrency=4,
            steps=["website", "fetch"],
            playbook=None,
        )


async def test_jobs_are_scoped_by_tenant_and_rows_stored_once(db: Database) -> None:
    tenant, _ = await make_tenant(db)
    other, _ = await make_tenant(db)
    await _job(db, tenant)
    async with db.session() as session:
        assert await repo.get_job(session, tenant_id=other, job_id="job-1") is None
        assert await repo.list_jobs(session, tenant_id=other) == []
        job = await repo.get_job(session, tenant_id=tenant, job_id="job-1")
        assert job is not None
        view = await repo.job_view(session, job=job)
        assert view.counts.pending == 7 and view.eta_seconds is None  # before rows are stored

        # An earlier attempt died after storing 3 rows: the rest is added, nothing twice.
        session.add_all(
            EnrichmentRecord(job_id="job-1", tenant_id=tenant, row_number=i + 1, data=row)
            for i, row in enumerate(ROWS[:3])
        )
        await session.commit()
        assert await repo.store_records(session, tenant_id=tenant, job_id="job-1", rows=ROWS) == 4
        assert await repo.store_records(session, tenant_id=tenant, job_id="job-1", rows=ROWS) == 0
        stored = await repo.list_records(session, job_id="job-1", limit=100)
        assert [r.row_number for r in stored] == list(range(1, 8))
        assert [r.data["company"] for r in stored] == [r["company"] for r in ROWS]
        job = await repo.get_job(session, tenant_id=tenant, job_id="job-1")
        assert job is not None and job.rows_stored and job.source is None


async def test_record_lifecycle_counts_and_cost(db: Database) -> None:
    tenant, _ = await make_tenant(db)
    await _job(db, tenant)
    async with db.session() as session:
        await repo.store_records(session, tenant_id=tenant, job_id="job-1", rows=ROWS)
        usage = TokenUsage(provider="anthropic", model="claude-sonnet-4-5", input_tokens=1000,
                           output_tokens=200)  # fmt: skip
        outcome = RecordOutcome(
            website="https://c1.example.com/",
            facts=CompanyFacts(summary="Makes things.", emails=("a@c1.example.com",)),
            email_subject="Hi",
            email_body="Hello",
            usage=usage,
            usd=0.006,
        )
        record = await repo.start_record(session, job_id="job-1", row_number=1)
        assert record is not None and record.attempts == 1 and record.status == "running"
        for _ in range(2):  # an attempt whose completion was lost writes again: counted once
            await repo.finish_record(
                session, job_id="job-1", row_number=1, status=RecordStatus.DONE, outcome=outcome
            )
        again = await repo.start_record(session, job_id="job-1", row_number=1)
        assert again is not None and again.status == "done" and again.attempts == 1
        await repo.start_record(session, job_id="job-1", row_number=2)
        await repo.finish_record(
            session, job_id="job-1", row_number=2, status=RecordStatus.FAILED, error="HTTP 404"
        )
        await repo.start_record(session, job_id="job-1", row_number=3)
        job = await repo.get_job(session, tenant_id=tenant, job_id="job-1")
        assert job is not None
        view = await repo.job_view(session, job=job)
        assert view.counts.model_dump() == {"pending": 4, "running": 1, "done": 1, "failed": 1}
        assert view.cost.input_tokens == 1000 and view.cost.output_tokens == 200
        assert view.cost.usd == 0.006
        assert view.throughput_per_s > 0 and view.eta_seconds is not None

        failed = await repo.list_records(session, job_id="job-1", status=RecordStatus.FAILED)
        assert [repo.record_view(r).model_dump() for r in failed] == [
            {"row_number": 2, "status": "failed", "error": "HTTP 404", "input": ROWS[1]}
        ]
        assert await repo.reset_running(session, job_id="job-1") == 1
        await repo.set_job_status(
            session, tenant_id=tenant, job_id="job-1", status=JobStatus.CANCELLED
        )
        job = await repo.get_job(session, tenant_id=tenant, job_id="job-1")
        assert job is not None
        view = await repo.job_view(session, job=job)
        assert view.status == JobStatus.CANCELLED and view.finished_at is not None
        assert view.counts.running == 0 and view.counts.pending == 5


async def test_fetch_cache_per_tenant_with_ttl(db: Database) -> None:
    tenant, _ = await make_tenant(db)
    other, _ = await make_tenant(db)
    research = SiteResearch(
        url="https://acme.com/",
        final_url="https://www.acme.com/",
        facts=CompanyFacts(summary="Anvils.", phones=("+14155550100",)),
    )
    async with db.session() as session:
        key = "acme.com"
        assert await repo.get_cached_research(session, tenant_id=tenant, site_key=key) is None
        await repo.put_cached_research(
            session, tenant_id=tenant, site_key=key, research=research, ttl=timedelta(hours=1)
        )
        assert await repo.get_cached_research(session, tenant_id=tenant, site_key=key) == research
        assert await repo.get_cached_research(session, tenant_id=other, site_key=key) is None
        newer = research.model_copy(update={"truncated": True})
        await repo.put_cached_research(
            session, tenant_id=tenant, site_key=key, research=newer, ttl=timedelta(seconds=-1)
        )
        # Replaced in place, and already expired.
        assert await repo.get_cached_research(session, tenant_id=tenant, site_key=key) is None
