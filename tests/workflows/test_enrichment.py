"""EnrichmentJobWorkflow on the real Temporal dev server, with its real activities, against the
fixture web on loopback and a SQLite database."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlmodel import select
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, Worker

from activities.llm.agent import Agent
from activities.llm.offline import offline_backend
from activities.web.activities import EnrichmentActivities
from activities.web.search import duckduckgo_provider
from models import search_attributes
from models.db import Database
from models.enrichment import (
    CancelJob,
    EnrichmentJobInput,
    EnrichmentStep,
    JobProgress,
    JobStatus,
    PauseJob,
    RecordOptions,
    ResumeJob,
    workflow_id,
)
from models.enrichment_tables import EnrichmentRecord
from models.repo import enrichment as repo
from models.settings import Settings
from tests.conftest import make_tenant
from tests.fakes.web import FakeWeb
from workflows.enrichment import EnrichmentJobWorkflow


@pytest.fixture(scope="module")
def web() -> Iterator[FakeWeb]:
    with FakeWeb(latency=0.05, slow_seconds=3.0, flaky_failures=1) as fake:
        yield fake


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], sqlite_url: str, web: FakeWeb) -> Settings:
    return settings_factory(
        sqlite_url,
        ssrf_allowlist=["127.0.0.1"],
        duckduckgo_url=web.search_url,
        fetch_timeout_seconds=0.5,
    )


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def acts(sqlite_db: Database, settings: Settings, http: httpx.AsyncClient) -> EnrichmentActivities:
    return EnrichmentActivities(
        db=sqlite_db,
        settings=settings,
        http=http,
        agent=Agent(settings=settings, db=sqlite_db, factories={"offline": offline_backend}),
        search_providers={"duckduckgo": duckduckgo_provider},
    )


def make_worker(client: Client, task_queue: str, acts: EnrichmentActivities) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[EnrichmentJobWorkflow],
        activities=[
            acts.store_rows,
            acts.set_job_status,
            acts.process_record,
            acts.mark_record_failed,
        ],
        max_concurrent_activities=50,
    )


@asynccontextmanager
async def worker(
    client: Client, task_queue: str, acts: EnrichmentActivities
) -> AsyncIterator[None]:
    async with make_worker(client, task_queue, acts):
        yield


def csv_text(rows: list[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


async def start_job(
    client: Client,
    db: Database,
    task_queue: str,
    rows: list[dict[str, str]],
    *,
    concurrency: int = 4,
    records_per_run: int = 500,
    heartbeat: float = 30.0,
    options: RecordOptions | None = None,
) -> tuple[str, str, WorkflowHandle[Any, JobProgress]]:
    tenant_id, _ = await make_tenant(db)
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
            concurrency=concurrency,
            steps=[s.value for s in EnrichmentStep],
            playbook=None,
        )
    handle = await client.start_workflow(
        EnrichmentJobWorkflow.run,
        EnrichmentJobInput(
            tenant_id=tenant_id,
            job_id=job_id,
            total=len(rows),
            concurrency=concurrency,
            records_per_run=records_per_run,
            options=options or RecordOptions(),
            record_heartbeat_timeout_seconds=heartbeat,
        ),
        id=workflow_id(tenant_id, job_id),
        task_queue=task_queue,
    )
    return tenant_id, job_id, handle


async def records(db: Database, job_id: str) -> list[EnrichmentRecord]:
    async with db.session() as session:
        result = await session.exec(
            select(EnrichmentRecord)
            .where(EnrichmentRecord.job_id == job_id)
            .order_by(EnrichmentRecord.row_number)  # type: ignore[arg-type]
        )
        return list(result.all())


async def wait_for(predicate: Callable[[], Any], timeout: float = 30.0) -> None:
    async def loop() -> None:
        while not await predicate():
            await asyncio.sleep(0.1)

    await asyncio.wait_for(loop(), timeout)


def site_rows(web: FakeWeb, names: list[str]) -> list[dict[str, str]]:
    return [
        {"company": name.replace("-", " ").title(), "website": web.site(name)} for name in names
    ]


async def test_small_job_completes_and_failures_are_per_record(
    temporal_client: Client,
    task_queue: str,
    sqlite_db: Database,
    acts: EnrichmentActivities,
    web: FakeWeb,
) -> None:
    rows = [
        *site_rows(web, ["acme", "odd", "missing", "pdf", "flaky-job", "slow", "acme"]),
        {"company": "Initech", "website": ""},  # found through the fake DuckDuckGo
        {"company": "Nothing Corp", "website": ""},  # search finds nothing
    ]
    async with worker(temporal_client, task_queue, acts):
        tenant_id, job_id, handle = await start_job(temporal_client, sqlite_db, task_queue, rows)
        progress = await handle.result()

    assert progress.status == JobStatus.COMPLETED
    assert (progress.done, progress.failed) == (5, 4)
    stored = await records(sqlite_db, job_id)
    assert [r.row_number for r in stored] == list(range(1, 10))
    by_row = {r.row_number: r for r in stored}

    acme = by_row[1]
    assert acme.status == "done" and acme.error is None
    assert acme.emails == ["info@acme.example.com"]
    assert acme.phones == ["+14155550100"]
    assert acme.social_links == ["https://linkedin.com/company/acme"]
    assert acme.summary and "reliable software" in acme.summary
    assert acme.email_subject and acme.email_body and acme.input_tokens > 0
    assert by_row[2].status == "done" and "sales@odd-co.com" in by_row[2].emails
    assert (
        by_row[3].status == "failed"
        and by_row[3].error == f"fetching {web.site('missing')}: HTTP 404"
    )
    assert by_row[4].status == "failed" and "not an HTML page (application/pdf)" in (
        by_row[4].error or ""
    )
    assert by_row[5].status == "done"  # 500 first, then success on Temporal's retry
    assert by_row[6].status == "failed"
    assert "timed out" in (by_row[6].error or "") and "gave up after 3 attempts" in (
        by_row[6].error or ""
    )
    assert by_row[7].status == "done" and by_row[7].emails == acme.emails
    assert web.count("acme") == 1  # the same site, twice in the job, fetched once
    assert by_row[8].status == "done" and by_row[8].website == web.site("initech")
    assert by_row[9].status == "failed" and "web search found no website" in (by_row[9].error or "")

    async with sqlite_db.session() as session:
        job = await repo.get_job(session, tenant_id=tenant_id, job_id=job_id)
        assert job is not None and job.status == "completed" and job.finished_at is not None
        assert job.source is None  # the CSV text is dropped once the rows are stored
        view = await repo.job_view(session, job=job)
    assert view.counts.done == 5 and view.counts.failed == 4 and view.counts.pending == 0
    assert view.cost.input_tokens > 0 and view.cost.output_tokens > 0
    description = await handle.describe()
    assert description.typed_search_attributes.get(search_attributes.JOB_STATUS) == "completed"
    # The history replays against the current code: the workflow is deterministic.
    await Replayer(
        workflows=[EnrichmentJobWorkflow], data_converter=pydantic_data_converter
    ).replay_workflow(await handle.fetch_history())


async def test_continue_as_new_keeps_going(
    temporal_client: Client,
    task_queue: str,
    sqlite_db: Database,
    acts: EnrichmentActivities,
    web: FakeWeb,
) -> None:
    rows = site_rows(web, [f"can-{i}" for i in range(8)])
    async with worker(temporal_client, task_queue, acts):
        _, job_id, handle = await start_job(
            temporal_client, sqlite_db, task_queue, rows, records_per_run=3, concurrency=2
        )
        progress = await handle.result()
    assert progress.status == JobStatus.COMPLETED
    assert progress.run == 3  # rows 1-3, 4-6, 7-8
    assert (progress.done, progress.failed) == (8, 0)
    assert [r.status for r in await records(sqlite_db, job_id)] == ["done"] * 8


async def test_pause_and_resume(
    temporal_client: Client,
    task_queue: str,
    sqlite_db: Database,
    acts: EnrichmentActivities,
    web: FakeWeb,
) -> None:
    rows = site_rows(web, [f"pause-{i}" for i in range(16)])
    async with worker(temporal_client, task_queue, acts):
        tenant_id, job_id, handle = await start_job(
            temporal_client, sqlite_db, task_queue, rows, concurrency=2
        )

        async def some_done() -> bool:
            return (await handle.query(EnrichmentJobWorkflow.progress)).done >= 2

        await wait_for(some_done)
        await handle.signal(EnrichmentJobWorkflow.pause, PauseJob())

        async def drained() -> bool:
            p = await handle.query(EnrichmentJobWorkflow.progress)
            return p.status == JobStatus.PAUSED and p.in_flight == 0

        await wait_for(drained)
        paused_at = await handle.query(EnrichmentJobWorkflow.progress)
        await asyncio.sleep(1.0)
        still = await handle.query(EnrichmentJobWorkflow.progress)
        assert still.done == paused_at.done < 16  # nothing moved while paused
        async with sqlite_db.session() as session:
            job = await repo.get_job(session, tenant_id=tenant_id, job_id=job_id)
            assert job is not None and job.status == "paused"
        description = await handle.describe()
        assert description.typed_search_attributes.get(search_attributes.JOB_STATUS) == "paused"

        await handle.signal(EnrichmentJobWorkflow.resume, ResumeJob())
        progress = await handle.result()
    assert progress.status == JobStatus.COMPLETED and progress.done == 16


async def test_cancel_mid_job_keeps_finished_records(
    temporal_client: Client,
    task_queue: str,
    sqlite_db: Database,
    acts: EnrichmentActivities,
) -> None:
    with FakeWeb(latency=0.3) as slow_web:
        rows = site_rows(slow_web, [f"cancel-{i}" for i in range(30)])
        async with worker(temporal_client, task_queue, acts):
            tenant_id, job_id, handle = await start_job(
                temporal_client, sqlite_db, task_queue, rows, concurrency=3, heartbeat=2.0
            )

            async def some_done() -> bool:
                return (await handle.query(EnrichmentJobWorkflow.progress)).done >= 3

            await wait_for(some_done)
            await handle.signal(EnrichmentJobWorkflow.cancel, CancelJob())
            progress = await handle.result()

    assert progress.status == JobStatus.CANCELLED
    stored = await records(sqlite_db, job_id)
    statuses = [r.status for r in stored]
    assert "running" not in statuses
    done = statuses.count("done")
    assert done >= 3 and statuses.count("pending") > 0 and done + statuses.count("pending") == 30
    assert all(r.email_body for r in stored if r.status == "done")  # finished work is kept
    async with sqlite_db.session() as session:
        job = await repo.get_job(session, tenant_id=tenant_id, job_id=job_id)
        assert job is not None and job.status == "cancelled" and job.finished_at is not None


async def test_worker_killed_mid_job_then_restarted(
    temporal_client: Client,
    task_queue: str,
    sqlite_db: Database,
    acts: EnrichmentActivities,
) -> None:
    with FakeWeb(latency=0.2) as slow_web:
        rows = site_rows(slow_web, [f"kill-{i}" for i in range(30)])
        first = make_worker(temporal_client, task_queue, acts)
        first_run = asyncio.create_task(first.run())
        _, job_id, handle = await start_job(
            temporal_client, sqlite_db, task_queue, rows, concurrency=5, heartbeat=2.0
        )

        async def some_done() -> bool:
            return sum(r.status == "done" for r in await records(sqlite_db, job_id)) >= 5

        await wait_for(some_done)
        # Abruptly: the worker task is cancelled with records in flight and its workflow cache
        # lost; the next worker must replay the history and pick the records up again.
        first_run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first_run
        in_flight = [
            r.row_number for r in await records(sqlite_db, job_id) if r.status == "running"
        ]
        assert in_flight  # the kill really happened mid-record

        async with worker(temporal_client, task_queue, acts):
            progress = await asyncio.wait_for(handle.result(), 60)

    assert progress.status == JobStatus.COMPLETED
    assert (progress.done, progress.failed) == (30, 0)
    stored = await records(sqlite_db, job_id)
    assert [r.row_number for r in stored] == list(range(1, 31))  # each record exactly once
    assert all(r.status == "done" and r.email_body for r in stored)
    assert any(r.attempts > 1 for r in stored if r.row_number in in_flight)
