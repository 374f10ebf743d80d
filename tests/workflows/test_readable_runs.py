"""What an operator reads in the Temporal UI for an enrichment job and a CRM sync: the run's
current details (the `__temporal_workflow_metadata` query the UI sends), the summary of every
scheduled activity and the static summary the API starts the run with. All of them go through
the payload codec like every payload; read here through the client's converter, as the UI reads
them through the codec endpoint. None may hold a lead's contact details (docs/security.md)."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities.crm.activities import CrmActivities
from activities.crm.plugin import crm_plugin
from models.crm import CrmKind, SyncMode, SyncOutcome, SyncStatus, request_crm_sync
from models.db import Database
from models.enrichment import (
    UPDATE_PAUSE,
    UPDATE_RESUME,
    EnrichmentJobInput,
    JobControlResult,
    JobProgress,
    JobStatus,
    JobStatusUpdate,
    MarkRecordFailedInput,
    PauseJob,
    ProcessRecordInput,
    ProcessRecordResult,
    RecordStatus,
    ResumeJob,
    StoreRowsInput,
    StoreRowsResult,
    workflow_id,
)
from models.repo import crm as crm_repo
from models.repo import leads as lead_repo
from models.settings import Settings
from tests.conftest import TEST_SECRET, make_tenant
from tests.fakes.crm import HubSpotFake, SalesforceFake, hubspot_rate_limit_body
from tests.stack import LiveStack, live_stack
from workflows.crm_sync import CrmSyncWorkflow
from workflows.enrichment import EnrichmentJobWorkflow

pytestmark = pytest.mark.timeout(180)

SETTLE = 60.0
LEAD_NAME = "Dana Brouwer"
LEAD_EMAIL = "dana.brouwer@example.nl"
LEAD_PHONE = "+31612345678"


# ---- reading a run as the UI does ---------------------------------------------------------


async def current_details(handle: WorkflowHandle[Any, Any]) -> str:
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return str(metadata.current_details)


async def activity_summaries(handle: WorkflowHandle[Any, Any]) -> list[str]:
    converter = handle._client.data_converter  # the codec's, as the UI's codec endpoint
    out: list[str] = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            assert event.user_metadata.HasField("summary"), event
            (summary,) = await converter.decode([event.user_metadata.summary], [str])
            out.append(str(summary))
    return out


async def details_until(
    handle: WorkflowHandle[Any, Any], wanted: Callable[[str], bool], what: str
) -> str:
    """Poll the details until they show `what` (the workflow sets them on its next task)."""
    seen = ""

    async def loop() -> str:
        nonlocal seen
        while True:
            seen = await current_details(handle)
            if wanted(seen):
                return seen
            await asyncio.sleep(0.1)

    try:
        return await asyncio.wait_for(loop(), SETTLE)
    except TimeoutError:
        raise AssertionError(f"details never showed {what}; last seen:\n{seen}") from None


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    async def loop() -> None:
        while not await check():
            await asyncio.sleep(0.1)

    try:
        await asyncio.wait_for(loop(), SETTLE)
    except TimeoutError:
        raise AssertionError(f"never: {what}") from None


# ---- enrichment: the workflow with stub activities under the real names -------------------


class StubEnrichment:
    """Row 2 fails for good at once, row 4 on every attempt, row 3 waits for `release`, row 1
    is done."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    @activity.defn(name="enrichment_store_rows")
    async def store_rows(self, request: StoreRowsInput) -> StoreRowsResult:
        return StoreRowsResult(stored=4)

    @activity.defn(name="enrichment_set_job_status")
    async def set_job_status(self, update: JobStatusUpdate) -> None:
        return None

    @activity.defn(name="enrichment_process_record")
    async def process_record(self, request: ProcessRecordInput) -> ProcessRecordResult:
        if request.row_number == 2:
            raise ApplicationError(
                "fetching https://gone.example/: HTTP 404",
                type="RecordNotFound",
                non_retryable=True,
            )
        if request.row_number == 4:
            raise ApplicationError("fetching https://slow.example/: timed out", type="FetchError")
        if request.row_number == 3:
            await self.release.wait()
        website = "acme.example" if request.row_number == 1 else None
        return ProcessRecordResult(
            row_number=request.row_number, status=RecordStatus.DONE, website=website
        )

    @activity.defn(name="enrichment_mark_record_failed")
    async def mark_record_failed(self, request: MarkRecordFailedInput) -> None:
        return None


async def test_enrichment_run_shows_progress_waiting_rows_and_row_summaries(
    temporal_client: Client, task_queue: str
) -> None:
    stubs = StubEnrichment()
    job_id = uuid.uuid4().hex[:12]
    async with Worker(
        temporal_client,
        task_queue=task_queue,
        workflows=[EnrichmentJobWorkflow],
        activities=[
            stubs.store_rows,
            stubs.set_job_status,
            stubs.process_record,
            stubs.mark_record_failed,
        ],
    ):
        handle = await temporal_client.start_workflow(
            EnrichmentJobWorkflow.run,
            EnrichmentJobInput(
                tenant_id="t-readable",
                job_id=job_id,
                total=4,
                concurrency=2,
                records_per_run=100,
                record_heartbeat_timeout_seconds=600,
            ),
            id=workflow_id("t-readable", job_id),
            task_queue=task_queue,
        )
        # Rows 1, 2 and 4 are over (4 after three attempts), row 3 is held by its activity: the
        # job waits on it alone.
        running = await details_until(handle, lambda d: "3/4 rows" in d, "three rows finished")
        lines = running.splitlines()
        assert lines[:2] == [
            f"**Enriching: 3/4 rows** (job {job_id}, run 1)",
            "- done 1, failed 2, in flight 1",
        ]
        assert lines[2].startswith("- rate: ") and " rows/min in this run; " in lines[2]
        assert lines[3].startswith("- waiting on: row 3 (oldest since ")
        assert "a row being retried shows its attempt and last failure" in lines[3]
        # The finished rows, newest first, with the company website the activity reported
        # (rows 2 and 4 finish in either order: two run at a time).
        assert lines[4].startswith("- latest: ") and lines[4].endswith("row 1 acme.example (done)")
        assert sorted(lines[4].removeprefix("- latest: ").split(", ")[:2]) == [
            "row 2 (failed)",
            "row 4 (failed)",
        ]
        assert lines[5:] == [
            "- last failure: row 4: fetching https://slow.example/: timed out "
            "(gave up after 3 attempts)"
        ]

        paused: JobControlResult = await handle.execute_update(
            UPDATE_PAUSE, PauseJob(), result_type=JobControlResult
        )
        assert paused.status is JobStatus.PAUSED
        details = await details_until(handle, lambda d: d.startswith("**Paused"), "the pause")
        assert details.startswith(f"**Paused: 3/4 rows** (job {job_id}, run 1)")
        assert "- waiting on: a resume (no new row starts); finishing row 3 (oldest" in details

        await handle.execute_update(UPDATE_RESUME, ResumeJob(), result_type=JobControlResult)
        stubs.release.set()
        progress: JobProgress = await handle.result()
        assert (progress.done, progress.failed) == (2, 2)
        done = await current_details(handle)
        assert done.splitlines()[0] == f"**Completed: 4/4 rows** (job {job_id}, run 1)"
        assert "- waiting on: nothing: the job is over" in done.splitlines()

        summaries = await activity_summaries(handle)
    steps = "website, fetch, extract, email"
    assert summaries[0] == f"store the 4 rows of job {job_id}"
    assert sorted(s for s in summaries if s.startswith("enrich row")) == [
        f"enrich row {n} of 4: {steps}" for n in (1, 2, 3, 4)
    ]
    assert "mark row 2 failed (not retryable)" in summaries
    assert "mark row 4 failed (after 3 attempts)" in summaries
    statuses = [s for s in summaries if s.startswith(f"job {job_id} status: ")]
    assert statuses == [f"job {job_id} status: {s}" for s in ("paused", "running", "completed")]


# ---- CRM sync: the real activities against fake CRMs over loopback HTTP -------------------


@pytest.fixture
def settings(settings_factory: Any, sqlite_url: str) -> Settings:
    made: Settings = settings_factory(sqlite_url)
    return made


class CrmEnv:
    def __init__(self, client: Client, db: Database, settings: Settings, task_queue: str) -> None:
        self.client, self.db, self.settings, self.task_queue = client, db, settings, task_queue
        self.tenant_id = ""

    async def integration(
        self, kind: CrmKind, url: str, credentials: dict[str, Any], mapping: dict[str, str]
    ) -> str:
        name = f"{kind.value}-{uuid.uuid4().hex[:4]}"
        async with self.db.session() as s:
            await crm_repo.create_integration(
                s,
                tenant_id=self.tenant_id,
                kind=kind,
                name=name,
                base_url=url,
                credentials=credentials,
                field_mapping=mapping,
                mode=SyncMode.SAGA,
                secret_key=TEST_SECRET,
            )
        return f"{kind.value} {name!r}"

    async def lead(self) -> str:
        async with self.db.session() as s:
            lead = await lead_repo.create_lead(
                s,
                tenant_id=self.tenant_id,
                channel="whatsapp",
                address=LEAD_PHONE,
                name=LEAD_NAME,
                email=LEAD_EMAIL,
                score=80,
                quality="HOT",
            )
            return lead.id

    async def sync(self, lead_id: str) -> WorkflowHandle[Any, Any]:
        """Started as the API, the conversation and enrichment start it (one function)."""
        started = await request_crm_sync(
            self.client,
            tenant_id=self.tenant_id,
            lead_id=lead_id,
            reason="operator edit (API)",
            coalesce_seconds=0.2,
            task_queue=self.task_queue,
        )
        return self.client.get_workflow_handle_for(CrmSyncWorkflow.run, started)

    def worker(self, http: httpx.AsyncClient) -> Worker:
        acts = CrmActivities(
            settings=self.settings, db=self.db, http=http, adapters=crm_plugin().crm_adapters
        )
        return Worker(
            self.client,
            task_queue=self.task_queue,
            workflows=[CrmSyncWorkflow],
            activities=[
                acts.load_crm_sync_plan,
                acts.read_crm_record,
                acts.write_crm_record,
                acts.compensate_crm_record,
                acts.add_crm_note,
                acts.record_crm_sync,
            ],
        )


@pytest.fixture
async def crm(
    temporal_client: Client, sqlite_db: Database, settings: Settings, task_queue: str
) -> AsyncIterator[CrmEnv]:
    env = CrmEnv(temporal_client, sqlite_db, settings, task_queue)
    env.tenant_id, _ = await make_tenant(sqlite_db)
    yield env


HS_MAPPING = {"email": "email", "last_name": "lastname", "score": "leadflow_score"}
SF_MAPPING = {"email": "Email", "last_name": "LastName", "score": "Score__c"}


def no_contact_details(*texts: str) -> None:
    for text in texts:
        for needle in (LEAD_NAME, "Brouwer", LEAD_EMAIL, "dana.brouwer", "612345678"):
            assert needle.lower() not in text.lower(), (needle, text)


async def test_crm_sync_rollback_names_each_crm_step_without_the_vendors_words(
    crm: CrmEnv,
) -> None:
    """HubSpot refuses the lead's e-mail address and quotes it: the outcome stored for the tenant
    keeps the vendor's words, the UI's details and summaries name the CRM and the error type."""
    with SalesforceFake() as sf, HubSpotFake(token="pat") as hs:
        hs.reject = {"email": LEAD_EMAIL}
        sf_label = await crm.integration(
            CrmKind.SALESFORCE,
            sf.url,
            {"client_id": "client-key", "client_secret": "client-secret"},
            SF_MAPPING,
        )
        hs_label = await crm.integration(
            CrmKind.HUBSPOT, hs.url, {"access_token": "pat"}, HS_MAPPING
        )
        lead_id = await crm.lead()
        async with httpx.AsyncClient(timeout=10) as http, crm.worker(http):
            handle = await crm.sync(lead_id)
            outcome: SyncOutcome = await handle.result()
            details = await current_details(handle)
            summaries = await activity_summaries(handle)
            description = await handle.describe()

    assert outcome.status is SyncStatus.ROLLED_BACK
    assert LEAD_EMAIL in (outcome.reason or "")  # the vendor's words, kept for the tenant
    assert sf.leads == {}  # the Salesforce lead it created was deleted again
    assert summaries == [
        "load lead and CRM connections (sync #1)",
        f"read {sf_label}: the lead's current record",
        f"write {sf_label}: create lead v1",
        f"read {hs_label}: the lead's current record",
        f"write {hs_label}: create lead v1",
        # the undo is registered before the write, so a write that failed half-way is undone too
        f"compensate {hs_label}: delete the created record",
        f"compensate {sf_label}: delete the created record",
        f"record outcome: rolled_back (failed: {hs_label})",
    ]
    assert details.splitlines() == [
        "**Idle after 1 sync(s)**",
        "- waiting on: nothing: ends unless another change arrives",
        f"- {sf_label}: created",
        f"- {hs_label}: create failed (CrmValidationError)",
        f"- {hs_label}: undone (delete the created record)",
        f"- {sf_label}: undone (delete the created record)",
        "- last outcome: rolled_back (sync #1)",
    ]
    assert await description.static_summary() == f"CRM sync of a lead of {crm.tenant_id}"
    assert await description.static_details() == (
        "- started by: operator edit (API)\n- later changes are coalesced into this run"
    )
    no_contact_details(details, *summaries, lead_id)


async def test_crm_sync_waiting_on_a_rate_limit_says_so(crm: CrmEnv) -> None:
    """A 429 with a long Retry-After: the run shows the CRM step it waits for and where its
    retries are seen; Temporal's pending activity holds the attempt and the rate-limit failure."""
    with HubSpotFake(token="pat") as hs:
        hs.fail(
            "POST",
            "/batch/upsert$",
            429,
            hubspot_rate_limit_body(),
            headers={"Retry-After": "600"},
        )
        hs_label = await crm.integration(
            CrmKind.HUBSPOT, hs.url, {"access_token": "pat"}, HS_MAPPING
        )
        lead_id = await crm.lead()
        async with httpx.AsyncClient(timeout=10) as http, crm.worker(http):
            handle = await crm.sync(lead_id)

            async def retry_pending() -> bool:
                pending = (await handle.describe()).raw_description.pending_activities
                return any(p.attempt >= 2 and p.HasField("last_failure") for p in pending)

            await until(retry_pending, "the write waits for its second attempt")
            details = await current_details(handle)
            summaries = await activity_summaries(handle)
            await handle.terminate("test over")

    assert details.splitlines() == [
        "**Syncing to 1 CRM(s) (sync #1)**",
        f"- waiting on: {hs_label}: create the record; a rate limit (429, Retry-After), an open "
        "breaker or a 5xx is retried by Temporal: the attempt and last failure show under "
        "Pending Activities",
        f"- CRMs in order: {hs_label}",
    ]
    assert summaries[-1] == f"write {hs_label}: create lead v1"
    no_contact_details(details, *summaries, lead_id)


# ---- the static summary the API starts an enrichment job with ------------------------------


@pytest.fixture
async def api_only(temporal_client: Client, settings: Settings) -> AsyncIterator[LiveStack]:
    async with live_stack(temporal_client, settings, start_worker=False) as s:
        yield s


async def test_enrichment_job_started_by_the_api_has_a_static_summary(api_only: LiveStack) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerows([["company", "website"], ["Acme", "https://acme.example"]])
    writer.writerow(["Brouwer Advies", "https://brouwer.example"])
    response = await api_only.http.post(
        "/api/v1/jobs",
        headers=api_only.auth,
        files={"file": ("dana-brouwer-leads.csv", buffer.getvalue().encode(), "text/csv")},
        data={"concurrency": "3", "steps": "website,fetch"},
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    handle = api_only.client.get_workflow_handle(workflow_id(api_only.tenant_id, job_id))
    description = await handle.describe()
    assert await description.static_summary() == f"Enrichment job {job_id}: 2 rows"
    details = await description.static_details()
    assert (
        details == "- rows: 2, 3 at a time\n- steps: website, fetch\n- playbook: the tenant default"
    )
    assert "brouwer" not in (details + (await description.static_summary() or "")).lower()
