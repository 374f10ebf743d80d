"""EnrichmentJobWorkflow on the real Temporal dev server, with its real activities, against the
fixture web on loopback and a SQLite database."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlmodel import select
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer, Worker

from activities.llm.agent import Agent
from activities.llm.offline import offline_backend
from activities.web.activities import EnrichmentActivities
from activities.web.search import duckduckgo_provider
from models import search_attributes
from models.db import Database
from models.enrichment import (
    JOB_CONTROL_REFUSED,
    UPDATE_CANCEL,
    UPDATE_PAUSE,
    UPDATE_RESUME,
    CancelJob,
    EnrichmentJobInput,
    EnrichmentStep,
    JobAction,
    JobControlResult,
    JobProgress,
    JobStatus,
    JobStatusUpdate,
    MarkRecordFailedInput,
    PauseJob,
    ProcessRecordInput,
    ProcessRecordResult,
    RecordOptions,
    RecordStatus,
    ResumeJob,
    StoreRowsInput,
    StoreRowsResult,
    control_refusal,
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
        workflows=[EnrichmentJobWorkflow], data_converter=temporal_client.data_converter
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
        paused = await control(handle, UPDATE_PAUSE, PauseJob())
        assert paused == JobControlResult(status=JobStatus.PAUSED)
        # Answered once the workflow wrote it: the database already says so.
        async with sqlite_db.session() as session:
            job = await repo.get_job(session, tenant_id=tenant_id, job_id=job_id)
            assert job is not None and job.status == "paused"
        description = await handle.describe()
        assert description.typed_search_attributes.get(search_attributes.JOB_STATUS) == "paused"

        async def drained() -> bool:
            p = await handle.query(EnrichmentJobWorkflow.progress)
            return p.status == JobStatus.PAUSED and p.in_flight == 0

        await wait_for(drained)
        paused_at = await handle.query(EnrichmentJobWorkflow.progress)
        assert paused_at.done < 16
        stored = await records(sqlite_db, job_id)
        assert "running" not in [r.status for r in stored]
        assert sum(r.status == "done" for r in stored) == paused_at.done

        resumed = await control(handle, UPDATE_RESUME, ResumeJob())
        assert resumed == JobControlResult(status=JobStatus.RUNNING)
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
            # By signal, as jobs started before the cancel update are cancelled.
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

        async def some_done_and_some_running() -> bool:
            statuses = [r.status for r in await records(sqlite_db, job_id)]
            return statuses.count("done") >= 5 and "running" in statuses

        # The kill really happens mid-record: records are running when the worker goes (read
        # before the kill: once it is cancelled, whether a row still says "running" depends on
        # how far the activities' own cancellation got).
        await wait_for(some_done_and_some_running)
        in_flight = [
            r.row_number for r in await records(sqlite_db, job_id) if r.status == "running"
        ]
        # Abruptly: the worker task is cancelled with records in flight and its workflow cache
        # lost; the next worker must replay the history and pick the records up again.
        first_run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first_run

        async with worker(temporal_client, task_queue, acts):
            progress = await asyncio.wait_for(handle.result(), 60)

    assert progress.status == JobStatus.COMPLETED
    assert (progress.done, progress.failed) == (30, 0)
    stored = await records(sqlite_db, job_id)
    assert [r.row_number for r in stored] == list(range(1, 31))  # each record exactly once
    assert all(r.status == "done" and r.email_body for r in stored)
    assert any(r.attempts > 1 for r in stored if r.row_number in in_flight)


# -- job control by update, with stub activities under the real names -----------------------
#
# The workflow's logic only: records stay in flight until the test lets them go, and every
# status write is seen (the workflow is its one writer). The real activities are covered above.


class StubActivities:
    def __init__(self) -> None:
        self.statuses: list[JobStatus] = []
        self.records_started = 0
        self.cancels_seen = 0
        self.release = asyncio.Event()
        """Set: records in flight finish (also the cancelled ones, which wait for it)."""
        self.held_rows: set[int] = set()
        self.release_held = asyncio.Event()
        """Rows in `held_rows` wait for this one as well."""

    def _may_finish(self, row: int) -> bool:
        return self.release.is_set() and (row not in self.held_rows or self.release_held.is_set())

    @activity.defn(name="enrichment_store_rows")
    async def store_rows(self, _: StoreRowsInput) -> StoreRowsResult:
        return StoreRowsResult(stored=0)

    @activity.defn(name="enrichment_set_job_status")
    async def set_job_status(self, update: JobStatusUpdate) -> None:
        self.statuses.append(update.status)

    @activity.defn(name="enrichment_process_record")
    async def process_record(self, request: ProcessRecordInput) -> ProcessRecordResult:
        self.records_started += 1
        cancelled = False
        while not self._may_finish(request.row_number):
            activity.heartbeat()
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                # A record that is slow to stop: the job stays open until the test says so.
                if not cancelled:
                    self.cancels_seen += 1
                cancelled = True
        if cancelled or activity.is_cancelled():
            raise asyncio.CancelledError
        return ProcessRecordResult(row_number=request.row_number, status=RecordStatus.DONE)

    @activity.defn(name="enrichment_mark_record_failed")
    async def mark_record_failed(self, _: MarkRecordFailedInput) -> None:
        return None


@asynccontextmanager
async def stub_worker(
    client: Client, task_queue: str, stubs: StubActivities
) -> AsyncIterator[None]:
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[EnrichmentJobWorkflow],
        activities=[
            stubs.store_rows,
            stubs.set_job_status,
            stubs.process_record,
            stubs.mark_record_failed,
        ],
    ):
        yield


async def start_stub_job(
    client: Client, task_queue: str, *, total: int = 6, concurrency: int = 2
) -> WorkflowHandle[Any, JobProgress]:
    job_id = uuid.uuid4().hex[:12]
    return await client.start_workflow(
        EnrichmentJobWorkflow.run,
        EnrichmentJobInput(
            tenant_id="t-stub",
            job_id=job_id,
            total=total,
            concurrency=concurrency,
            records_per_run=500,
            record_heartbeat_timeout_seconds=1.0,
        ),
        id=workflow_id("t-stub", job_id),
        task_queue=task_queue,
    )


async def control(
    handle: WorkflowHandle[Any, Any], update: str, arg: Any, id: str | None = None
) -> JobControlResult:
    # By name: the SDK's typing of a named async update returns the coroutine type.
    result: JobControlResult = await handle.execute_update(
        update, arg, id=id, result_type=JobControlResult
    )
    return result


async def refused(call: Awaitable[JobControlResult]) -> str:
    """The reason of an update its validator refused."""
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await call
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == JOB_CONTROL_REFUSED
    return cause.message


async def test_pause_and_resume_updates_answer_with_the_written_status(
    temporal_client: Client, task_queue: str
) -> None:
    stubs = StubActivities()
    async with stub_worker(temporal_client, task_queue, stubs):
        handle = await start_stub_job(temporal_client, task_queue)

        async def in_flight() -> bool:
            return stubs.records_started == 2

        await wait_for(in_flight)
        paused = await control(handle, UPDATE_PAUSE, PauseJob())
        assert paused == JobControlResult(status=JobStatus.PAUSED)
        assert stubs.statuses == [JobStatus.PAUSED]  # written before the answer
        assert await refused(control(handle, UPDATE_PAUSE, PauseJob())) == "job is already paused"
        assert stubs.statuses == [JobStatus.PAUSED]  # a refused update starts nothing

        resumed = await control(handle, UPDATE_RESUME, ResumeJob())
        assert resumed == JobControlResult(status=JobStatus.RUNNING)
        assert stubs.statuses == [JobStatus.PAUSED, JobStatus.RUNNING]
        assert (
            await refused(control(handle, UPDATE_RESUME, ResumeJob()))
            == "job is not paused (it is running)"
        )

        stubs.release.set()
        progress = await handle.result()
        assert progress.status == JobStatus.COMPLETED and progress.done == 6
        assert stubs.statuses == [JobStatus.PAUSED, JobStatus.RUNNING, JobStatus.COMPLETED]
        history = await handle.fetch_history()
    # Refused updates leave no trace in the history; accepted ones do, and it replays.
    accepted = [
        e
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]
    assert len(accepted) == 2
    await Replayer(
        workflows=[EnrichmentJobWorkflow], data_converter=temporal_client.data_converter
    ).replay_workflow(history)


async def test_the_same_update_id_acts_once(temporal_client: Client, task_queue: str) -> None:
    stubs = StubActivities()
    async with stub_worker(temporal_client, task_queue, stubs):
        handle = await start_stub_job(temporal_client, task_queue)
        first = await control(handle, UPDATE_PAUSE, PauseJob(), id="pause:key-1")
        again = await control(handle, UPDATE_PAUSE, PauseJob(), id="pause:key-1")
        assert first == again == JobControlResult(status=JobStatus.PAUSED)
        assert stubs.statuses == [JobStatus.PAUSED]  # one pause, written once
        stubs.release.set()
        await control(handle, UPDATE_CANCEL, CancelJob())
        assert (await handle.result()).status == JobStatus.CANCELLED


async def test_cancel_update_answers_before_records_stop_and_refuses_what_follows(
    temporal_client: Client, task_queue: str
) -> None:
    stubs = StubActivities()
    async with stub_worker(temporal_client, task_queue, stubs):
        handle = await start_stub_job(temporal_client, task_queue, concurrency=3)

        async def in_flight() -> bool:
            return stubs.records_started == 3

        await wait_for(in_flight)
        cancelled = await control(handle, UPDATE_CANCEL, CancelJob())
        assert cancelled == JobControlResult(status=JobStatus.CANCELLED)
        assert stubs.statuses == [JobStatus.CANCELLED]
        # The records have not stopped yet (they wait for `release`): the job is still open,
        # and its validators refuse every further control.
        progress = await handle.query(EnrichmentJobWorkflow.progress)
        assert progress.status == JobStatus.CANCELLED and progress.in_flight == 3
        assert (
            await refused(control(handle, UPDATE_CANCEL, CancelJob())) == "job is already cancelled"
        )
        assert await refused(control(handle, UPDATE_PAUSE, PauseJob())) == "job is cancelled"
        assert await refused(control(handle, UPDATE_RESUME, ResumeJob())) == "job is cancelled"

        async def cancels_arrived() -> bool:
            return stubs.cancels_seen == 3

        await wait_for(cancels_arrived)  # with the records' heartbeats
        stubs.release.set()
        progress = await handle.result()
    assert progress.status == JobStatus.CANCELLED and progress.done == 0
    # Written again once the records stopped: the unfinished ones go back to pending.
    assert stubs.statuses == [JobStatus.CANCELLED, JobStatus.CANCELLED]


async def test_a_paused_job_can_be_cancelled_and_a_finished_one_refuses(
    temporal_client: Client, task_queue: str
) -> None:
    stubs = StubActivities()
    stubs.release.set()  # records finish at once
    async with stub_worker(temporal_client, task_queue, stubs):
        done = await start_stub_job(temporal_client, task_queue, total=2)
        assert (await done.result()).status == JobStatus.COMPLETED
        # The run is over: there is no workflow left to refuse it; Temporal says so.
        with pytest.raises(RPCError) as gone:
            await control(done, UPDATE_PAUSE, PauseJob())
        assert gone.value.status == RPCStatusCode.NOT_FOUND

        stubs.release.clear()
        handle = await start_stub_job(temporal_client, task_queue)
        await control(handle, UPDATE_PAUSE, PauseJob())
        result = await control(handle, UPDATE_CANCEL, CancelJob())
        assert result == JobControlResult(status=JobStatus.CANCELLED)
        stubs.release.set()
        assert (await handle.result()).status == JobStatus.CANCELLED


async def test_an_update_at_the_end_of_a_run_is_answered_before_continue_as_new(
    temporal_client: Client, task_queue: str
) -> None:
    stubs = StubActivities()
    async with stub_worker(temporal_client, task_queue, stubs):
        job_id = uuid.uuid4().hex[:12]
        handle = await temporal_client.start_workflow(
            EnrichmentJobWorkflow.run,
            EnrichmentJobInput(
                tenant_id="t-stub",
                job_id=job_id,
                total=4,
                concurrency=2,
                records_per_run=2,
                record_heartbeat_timeout_seconds=1.0,
            ),
            id=workflow_id("t-stub", job_id),
            task_queue=task_queue,
        )

        async def in_flight() -> bool:
            return stubs.records_started == 2

        await wait_for(in_flight)
        # Both records of the first run are in flight: the pause lands as the run ends.
        pausing = asyncio.create_task(control(handle, UPDATE_PAUSE, PauseJob()))
        stubs.release.set()
        assert await pausing == JobControlResult(status=JobStatus.PAUSED)

        async def next_run() -> bool:
            return (await handle.query(EnrichmentJobWorkflow.progress)).run == 2

        await wait_for(next_run)
        progress = await handle.query(EnrichmentJobWorkflow.progress)
        assert progress.status == JobStatus.PAUSED and progress.done == 2  # carried over, paused
        assert await control(handle, UPDATE_RESUME, ResumeJob()) == JobControlResult(
            status=JobStatus.RUNNING
        )
        final = await handle.result()
    assert final.status == JobStatus.COMPLETED and final.done == 4 and final.run == 2


@pytest.mark.parametrize(
    ("action", "status", "reason"),
    [
        (JobAction.PAUSE, JobStatus.RUNNING, None),
        (JobAction.PAUSE, JobStatus.PAUSED, "job is already paused"),
        (JobAction.PAUSE, JobStatus.CANCELLED, "job is cancelled"),
        (JobAction.PAUSE, JobStatus.COMPLETED, "job is completed"),
        (JobAction.PAUSE, JobStatus.FAILED, "job is failed"),
        (JobAction.RESUME, JobStatus.PAUSED, None),
        (JobAction.RESUME, JobStatus.RUNNING, "job is not paused (it is running)"),
        (JobAction.RESUME, JobStatus.CANCELLED, "job is cancelled"),
        (JobAction.RESUME, JobStatus.COMPLETED, "job is completed"),
        (JobAction.CANCEL, JobStatus.RUNNING, None),
        (JobAction.CANCEL, JobStatus.PAUSED, None),
        (JobAction.CANCEL, JobStatus.CANCELLED, "job is already cancelled"),
        (JobAction.CANCEL, JobStatus.COMPLETED, "job is completed"),
        (JobAction.CANCEL, JobStatus.FAILED, "job is failed"),
    ],
)
def test_what_each_control_is_refused_in_each_status(
    action: JobAction, status: JobStatus, reason: str | None
) -> None:
    """The validators' one rule (the API asks it too, of a job whose workflow has ended)."""
    assert control_refusal(action, status) == reason


async def test_a_retried_update_that_reaches_a_later_run_acts_once(
    temporal_client: Client, task_queue: str
) -> None:
    """Temporal deduplicates update ids within a run; the job carries the ids it applied across
    continue-as-new, so a client's retry that arrives after it neither acts nor is refused."""
    stubs = StubActivities()
    stubs.held_rows = {3, 4}  # the second run's records stay in flight
    async with stub_worker(temporal_client, task_queue, stubs):
        job_id = uuid.uuid4().hex[:12]
        handle = await temporal_client.start_workflow(
            EnrichmentJobWorkflow.run,
            EnrichmentJobInput(
                tenant_id="t-stub",
                job_id=job_id,
                total=4,
                concurrency=2,
                records_per_run=2,
                record_heartbeat_timeout_seconds=1.0,
            ),
            id=workflow_id("t-stub", job_id),
            task_queue=task_queue,
        )
        paused = await control(handle, UPDATE_PAUSE, PauseJob(), id="pause:key-7")
        assert paused.status == JobStatus.PAUSED
        await control(handle, UPDATE_RESUME, ResumeJob(), id="resume:key-8")
        stubs.release.set()

        async def next_run() -> bool:
            return (await handle.query(EnrichmentJobWorkflow.progress)).run == 2

        await wait_for(next_run)
        writes = list(stubs.statuses)
        retried = await control(handle, UPDATE_PAUSE, PauseJob(), id="pause:key-7")
        assert retried == JobControlResult(status=JobStatus.RUNNING)  # not paused again
        assert stubs.statuses == writes  # nothing written
        # A new pause is a new command, and still applies.
        assert (await control(handle, UPDATE_PAUSE, PauseJob())).status == JobStatus.PAUSED
        assert (await control(handle, UPDATE_RESUME, ResumeJob())).status == JobStatus.RUNNING
        stubs.release_held.set()
        final = await handle.result()
    assert final.status == JobStatus.COMPLETED and final.done == 4 and final.run == 2
