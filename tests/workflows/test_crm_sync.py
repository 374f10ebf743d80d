"""CrmSyncWorkflow against the real Temporal dev server and fake CRMs over loopback HTTP."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.converter import DataConverter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities.crm.activities import CrmActivities, CrmSyncRequester
from activities.crm.plugin import crm_plugin
from models.crm import (
    CrmKind,
    CrmSyncInput,
    CrmSyncState,
    RequestCrmSyncInput,
    StepStatus,
    SyncMode,
    SyncOutcome,
    SyncRequest,
    SyncStatus,
    crm_sync_workflow_id,
    legacy_crm_sync_workflow_id,
    request_crm_sync,
)
from models.crm_tables import CrmSyncRun
from models.db import Database
from models.repo import crm as crm_repo
from models.repo import leads as lead_repo
from models.settings import Settings
from tests.conftest import TEST_SECRET, make_tenant
from tests.fakes.crm import (
    HubSpotFake,
    PipedriveFake,
    SalesforceFake,
    hubspot_rate_limit_body,
)
from workflows.crm_sync import CrmSyncWorkflow

pytestmark = pytest.mark.timeout(120)

HS_MAPPING = {
    "email": "email",
    "first_name": "firstname",
    "last_name": "lastname",
    "score": "leadflow_score",
    "quality": "leadflow_quality",
}
SF_MAPPING = {"email": "Email", "last_name": "LastName", "score": "Score__c", "quality": "Rating"}
PD_MAPPING = {"name": "name", "email": "email", "score": "a" * 40}


@pytest.fixture
def settings(settings_factory: Any, sqlite_url: str) -> Settings:
    made: Settings = settings_factory(sqlite_url)
    return made


class Env:
    def __init__(self, client: Client, db: Database, settings: Settings, task_queue: str) -> None:
        self.client = client
        self.db = db
        self.settings = settings
        self.task_queue = task_queue
        self.tenant_id = ""

    async def setup_tenant(self) -> str:
        self.tenant_id, _ = await make_tenant(self.db)
        return self.tenant_id

    async def integration(
        self,
        kind: CrmKind,
        url: str,
        credentials: dict[str, Any],
        mapping: dict[str, str],
        mode: SyncMode = SyncMode.SAGA,
    ) -> str:
        async with self.db.session() as s:
            row = await crm_repo.create_integration(
                s,
                tenant_id=self.tenant_id,
                kind=kind,
                name=f"{kind.value}-{uuid.uuid4().hex[:4]}",
                base_url=url,
                credentials=credentials,
                field_mapping=mapping,
                mode=mode,
                secret_key=TEST_SECRET,
            )
            return row.id

    async def lead(self, **values: Any) -> str:
        async with self.db.session() as s:
            lead = await lead_repo.create_lead(
                s, tenant_id=self.tenant_id, channel="waha", address="4915100000@c.us", **values
            )
            return lead.id

    async def change_lead(self, lead_id: str, **changes: Any) -> None:
        async with self.db.session() as s:
            lead = await lead_repo.get_lead(s, tenant_id=self.tenant_id, lead_id=lead_id)
            assert lead is not None
            await lead_repo.update_lead(s, lead=lead, changes=changes)

    @asynccontextmanager
    async def worker(self) -> AsyncIterator[Worker]:
        async with httpx.AsyncClient(timeout=10) as http:
            acts = CrmActivities(
                settings=self.settings,
                db=self.db,
                http=http,
                adapters=crm_plugin().crm_adapters,
            )
            worker = Worker(
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
                    acts.check_crm_connection,
                ],
            )
            async with worker:
                yield worker

    async def start(
        self, lead_id: str, reason: str = "test", coalesce: float = 0.2
    ) -> WorkflowHandle[Any, Any]:
        return await self.client.start_workflow(
            CrmSyncWorkflow.run,
            CrmSyncInput(tenant_id=self.tenant_id, lead_id=lead_id, coalesce_seconds=coalesce),
            id=crm_sync_workflow_id(self.tenant_id, lead_id),
            task_queue=self.task_queue,
            start_signal="request_sync",
            start_signal_args=[SyncRequest(reason=reason)],
        )

    async def runs(self, lead_id: str) -> list[CrmSyncRun]:
        async with self.db.session() as s:
            return await crm_repo.sync_runs_of_lead(s, tenant_id=self.tenant_id, lead_id=lead_id)


@pytest.fixture
async def env(
    temporal_client: Client, sqlite_db: Database, settings: Settings, task_queue: str
) -> Env:
    e = Env(temporal_client, sqlite_db, settings, task_queue)
    await e.setup_tenant()
    return e


async def activity_summaries(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """What an operator reads in the Temporal UI: each scheduled activity's summary (encrypted
    like every payload; the UI decodes it through the codec endpoint)."""
    converter: DataConverter = handle._client.data_converter
    out: list[str] = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            (summary,) = await converter.decode([event.user_metadata.summary], [str])
            out.append(str(summary))
    return out


async def test_saga_writes_every_crm_and_records_links(env: Env) -> None:
    with HubSpotFake(token="pat") as hs, SalesforceFake() as sf:
        existing = hs.add_contact(
            {"email": "ana@example.com", "firstname": "Ana", "lifecyclestage": "lead"}
        )
        hs_id = await env.integration(CrmKind.HUBSPOT, hs.url, {"access_token": "pat"}, HS_MAPPING)
        sf_id = await env.integration(
            CrmKind.SALESFORCE,
            sf.url,
            {"client_id": "client-key", "client_secret": "client-secret"},
            SF_MAPPING,
        )
        lead_id = await env.lead(
            name="Ana Lima",
            email="ana@example.com",
            score=72,
            quality="HOT",
            fields={"summary": "Wants a test drive of the SUV on Saturday."},
        )
        async with env.worker():
            handle = await env.start(lead_id)
            outcome: SyncOutcome = await handle.result()

        assert outcome.status is SyncStatus.SUCCEEDED, outcome
        assert [s.status for s in outcome.steps] == [StepStatus.SUCCEEDED] * 2
        props = hs.contacts[existing]["properties"]
        assert props["leadflow_score"] == "72" and props["leadflow_quality"] == "HOT"
        assert props["lastname"] == "Lima" and props["lifecyclestage"] == "lead"
        assert len(hs.contacts) == 1
        [sf_lead] = sf.leads.values()
        assert sf_lead["Leadflow_Id__c"] == lead_id and sf_lead["Rating"] == "HOT"
        assert sf_lead["Company"] == "[not provided]"
        # the conversation summary became a HubSpot note and a Salesforce Task
        assert [n["properties"]["hs_note_body"] for n in hs.notes.values()] == [
            "Wants a test drive of the SUV on Saturday."
        ]
        [task] = sf.tasks.values()
        assert task["WhoId"] == sf_lead["Id"]
        async with env.db.session() as s:
            links = await crm_repo.links_of_lead(s, tenant_id=env.tenant_id, lead_id=lead_id)
        by_integration = {link.integration_id: link for link in links}
        assert by_integration[hs_id].remote_id == existing
        assert by_integration[sf_id].remote_id == sf_lead["Id"]
        assert {link.outcome for link in links} == {"succeeded"}
        assert all(link.last_version == 1 for link in links)

        summaries = await activity_summaries(handle)
        assert summaries[0].startswith("load lead")
        assert any(s.startswith("write hubspot") and "update lead" in s for s in summaries)
        assert any(s.startswith("write salesforce") and "create lead" in s for s in summaries)
        assert summaries[-1] == "record outcome: succeeded"


async def test_hubspot_429_then_success_waits_the_advised_delay(env: Env) -> None:
    with HubSpotFake(token="pat") as hs:
        hs.fail(
            "POST",
            "/batch/upsert$",
            429,
            hubspot_rate_limit_body(),
            headers={"X-HubSpot-RateLimit-Remaining": "0"},
        )
        await env.integration(CrmKind.HUBSPOT, hs.url, {"access_token": "pat"}, HS_MAPPING)
        lead_id = await env.lead(name="Bo", email="bo@example.com", score=10)
        async with env.worker():
            outcome = await (await env.start(lead_id)).result()
        assert outcome.status is SyncStatus.SUCCEEDED
        upserts = hs.calls("POST", "/batch/upsert$")
        assert len(upserts) == 2
        assert hs.by_email("bo@example.com") is not None


async def test_5xx_then_success(env: Env) -> None:
    with SalesforceFake() as sf:
        sf.fail(
            "PATCH",
            "/sobjects/Lead/Leadflow_Id__c/",
            503,
            [{"message": "busy", "errorCode": "SERVER_UNAVAILABLE"}],
            times=2,
        )
        await env.integration(
            CrmKind.SALESFORCE,
            sf.url,
            {"client_id": "client-key", "client_secret": "client-secret"},
            SF_MAPPING,
        )
        lead_id = await env.lead(name="Cy Doe", email="cy@example.com")
        async with env.worker():
            outcome = await (await env.start(lead_id)).result()
        assert outcome.status is SyncStatus.SUCCEEDED
        assert len(sf.calls("PATCH", "/sobjects/Lead/Leadflow_Id__c/")) == 3
        assert len(sf.leads) == 1


async def test_validation_400_in_second_crm_restores_the_first_exactly(env: Env) -> None:
    with HubSpotFake(token="pat") as hs, SalesforceFake() as sf:
        before = {
            "email": "dan@example.com",
            "firstname": "Daniel",
            "leadflow_score": "15",
            "hs_lead_status": "OPEN",
        }
        cid = hs.add_contact(dict(before))
        sf.reject = {"Rating": "HOT"}
        await env.integration(CrmKind.HUBSPOT, hs.url, {"access_token": "pat"}, HS_MAPPING)
        await env.integration(
            CrmKind.SALESFORCE,
            sf.url,
            {"client_id": "client-key", "client_secret": "client-secret"},
            SF_MAPPING,
        )
        lead_id = await env.lead(name="Dan Brown", email="dan@example.com", score=90, quality="HOT")
        async with env.worker():
            handle = await env.start(lead_id)
            outcome = await handle.result()

        assert outcome.status is SyncStatus.ROLLED_BACK
        assert "FIELD_CUSTOM_VALIDATION_EXCEPTION" in (outcome.reason or "")
        assert [s.status for s in outcome.steps] == [StepStatus.COMPENSATED, StepStatus.FAILED]
        # HubSpot was written (score 90...) and then put back exactly as it was
        write, restore = hs.calls("PATCH", f"/contacts/{cid}$")
        assert write.body["properties"]["leadflow_score"] == "90"
        assert restore.body["properties"]["leadflow_score"] == "15"
        # lastname and leadflow_quality did not exist: cleared with "" as HubSpot documents
        assert restore.body["properties"]["leadflow_quality"] == ""
        assert hs.contacts[cid]["properties"] == before
        assert sf.leads == {}
        # a rejected value is not retried: one upsert attempt only
        assert len(sf.calls("PATCH", "/sobjects/Lead/Leadflow_Id__c/")) == 1
        [run] = await env.runs(lead_id)
        assert run.status == "rolled_back"
        summaries = await activity_summaries(handle)
        assert any(
            s.startswith("compensate hubspot") and "restore previous values" in s for s in summaries
        )


async def test_compensation_deletes_records_the_saga_created(env: Env) -> None:
    with (
        PipedriveFake(api_token="pd") as pd,
        HubSpotFake(token="pat") as hs,
        SalesforceFake() as sf,
    ):
        sf.reject = {"Rating": "WARM"}
        await env.integration(CrmKind.PIPEDRIVE, pd.url, {"api_token": "pd"}, PD_MAPPING)
        await env.integration(CrmKind.HUBSPOT, hs.url, {"access_token": "pat"}, HS_MAPPING)
        await env.integration(
            CrmKind.SALESFORCE,
            sf.url,
            {"client_id": "client-key", "client_secret": "client-secret"},
            SF_MAPPING,
        )
        lead_id = await env.lead(
            name="Eve Stone", email="eve@example.com", score=55, quality="WARM"
        )
        async with env.worker():
            outcome = await (await env.start(lead_id)).result()

        assert outcome.status is SyncStatus.ROLLED_BACK
        assert [s.created for s in outcome.steps[:2]] == [True, True]
        # both creations really happened, and were undone: person + Pipedrive lead, HubSpot contact
        assert len(pd.calls("POST", "^/api/v2/persons$")) == 1
        assert len(pd.calls("POST", "^/v1/leads$")) == 1
        assert pd.persons == {} and pd.leads == {}
        assert len(hs.calls("POST", "/batch/upsert$")) == 1
        assert hs.contacts == {}
        async with env.db.session() as s:
            links = await crm_repo.links_of_lead(s, tenant_id=env.tenant_id, lead_id=lead_id)
        assert all(link.remote_id is None for link in links)


async def test_best_effort_keeps_what_succeeded(env: Env) -> None:
    with HubSpotFake(token="pat") as hs, SalesforceFake() as sf:
        sf.reject = {"Rating": "COLD"}
        await env.integration(
            CrmKind.HUBSPOT, hs.url, {"access_token": "pat"}, HS_MAPPING, SyncMode.BEST_EFFORT
        )
        await env.integration(
            CrmKind.SALESFORCE,
            sf.url,
            {"client_id": "client-key", "client_secret": "client-secret"},
            SF_MAPPING,
            SyncMode.BEST_EFFORT,
        )
        lead_id = await env.lead(name="Flo Rida", email="flo@example.com", score=5)
        async with env.worker():
            outcome = await (await env.start(lead_id)).result()
        assert outcome.status is SyncStatus.PARTIAL
        assert [s.status for s in outcome.steps] == [StepStatus.SUCCEEDED, StepStatus.FAILED]
        contact = hs.by_email("flo@example.com")
        assert contact is not None and contact["properties"]["leadflow_score"] == "5"


async def test_worker_crash_between_write_and_completion_creates_no_duplicate(
    env: Env,
) -> None:
    with HubSpotFake(token="pat") as hs:
        await env.integration(CrmKind.HUBSPOT, hs.url, {"access_token": "pat"}, HS_MAPPING)
        lead_id = await env.lead(name="Gus Grey", email="gus@example.com", score=33)
        # HubSpot applies the create, but its answer never reaches the first worker
        stall = hs.stall("POST", "/batch/upsert$")
        async with env.worker():
            handle = await env.start(lead_id)
            assert await asyncio.to_thread(stall.hit.wait, 30)
            assert hs.by_email("gus@example.com") is not None
            # leaving the block stops the worker abruptly: the in-flight write is cut off
        hs.release()
        async with env.worker():
            outcome = await handle.result()
        assert outcome.status is SyncStatus.SUCCEEDED
        assert len(hs.calls("POST", "/batch/upsert$")) == 2  # the write really ran twice
        assert len(hs.contacts) == 1  # ... and created one contact
        assert outcome.steps[0].remote_id == next(iter(hs.contacts))


async def test_many_changes_coalesce_into_one_sync_of_the_latest_state(env: Env) -> None:
    with HubSpotFake(token="pat") as hs:
        await env.integration(CrmKind.HUBSPOT, hs.url, {"access_token": "pat"}, HS_MAPPING)
        lead_id = await env.lead(name="Hal Jordan", email="hal@example.com", score=1)
        async with env.worker():
            handle = await env.start(lead_id, reason="change 1", coalesce=1.5)
            for n in range(2, 6):
                await env.change_lead(lead_id, score=n * 10)
                await handle.signal("request_sync", SyncRequest(reason=f"change {n}"))
                await asyncio.sleep(0.1)
            outcome: SyncOutcome = await handle.result()
        assert outcome.reasons == tuple(f"change {n}" for n in range(1, 6))
        assert outcome.version == 5
        upserts = hs.calls("POST", "/batch/upsert$")
        assert len(upserts) == 1
        assert upserts[0].body["inputs"][0]["properties"]["leadflow_score"] == "50"
        assert len(await env.runs(lead_id)) == 1


async def test_builtin_table_is_the_default_crm(env: Env) -> None:
    lead_id = await env.lead(name="Ivy", email="ivy@example.com")
    async with env.worker():
        outcome = await (await env.start(lead_id)).result()
    assert outcome.status is SyncStatus.SUCCEEDED
    [step] = outcome.steps
    assert step.kind is CrmKind.BUILTIN and step.remote_id == lead_id
    async with env.db.session() as s:
        [link] = await crm_repo.links_of_lead(s, tenant_id=env.tenant_id, lead_id=lead_id)
    assert link.integration_id == "builtin" and link.last_version == 1


async def test_request_crm_sync_activity_signal_with_starts_one_workflow(env: Env) -> None:
    lead_id = await env.lead(name="Jo", email="jo@example.com")
    requester = CrmSyncRequester(task_queue=env.task_queue, coalesce_seconds=0.5)
    activity_env = ActivityEnvironment(client=env.client)
    started = time.monotonic()
    async with env.worker():
        first = await activity_env.run(
            requester.request_crm_sync,
            RequestCrmSyncInput(tenant_id=env.tenant_id, lead_id=lead_id, reason="turn 1"),
        )
        second = await activity_env.run(
            requester.request_crm_sync,
            RequestCrmSyncInput(tenant_id=env.tenant_id, lead_id=lead_id, reason="turn 2"),
        )
        assert (
            first.workflow_id == second.workflow_id == crm_sync_workflow_id(env.tenant_id, lead_id)
        )
        outcome = await env.client.get_workflow_handle(
            first.workflow_id, result_type=SyncOutcome
        ).result()
    assert outcome.reasons == ("turn 1", "turn 2")
    assert time.monotonic() - started < 30


async def test_a_sync_under_its_hashed_id_knows_its_lead_from_its_input(env: Env) -> None:
    """The id holds a keyed hash of the lead id, not the lead id; the `state` query names the
    lead all the same (from the input: nothing parses the id)."""
    lead_id = await env.lead(name="Ana", email="ana@example.com")
    async with env.worker():
        workflow_id = await request_crm_sync(
            env.client,
            tenant_id=env.tenant_id,
            lead_id=lead_id,
            reason="hashed",
            coalesce_seconds=0.2,
            task_queue=env.task_queue,
        )
        handle = env.client.get_workflow_handle(workflow_id, result_type=SyncOutcome)
        outcome = await handle.result()
        state = await handle.query("state", result_type=CrmSyncState)
    assert workflow_id == crm_sync_workflow_id(env.tenant_id, lead_id)
    assert lead_id not in workflow_id and lead_id.split("-")[0] not in workflow_id
    assert outcome.status is SyncStatus.SUCCEEDED and outcome.lead_id == lead_id
    assert (state.tenant_id, state.lead_id, state.syncs_done) == (env.tenant_id, lead_id, 1)


async def test_a_running_legacy_sync_gets_the_requests_until_it_ends(env: Env) -> None:
    """A sync started before hashed ids (`crm:{tenant}:{lead}`) is signalled while it runs, so
    two sagas of one lead never run at once; once it ended, requests go to the hashed id."""
    lead_id = await env.lead(name="Jo", email="jo@example.com")
    legacy_id = legacy_crm_sync_workflow_id(env.tenant_id, lead_id)
    assert legacy_id == f"crm:{env.tenant_id}:{lead_id}"
    # No worker yet: the legacy run stays open, as one waiting out a CRM would.
    legacy = await env.client.start_workflow(
        CrmSyncWorkflow.run,
        CrmSyncInput(tenant_id=env.tenant_id, lead_id=lead_id, coalesce_seconds=0.2),
        id=legacy_id,
        task_queue=env.task_queue,
        start_signal="request_sync",
        start_signal_args=[SyncRequest(reason="before the upgrade")],
    )
    joined = await request_crm_sync(
        env.client,
        tenant_id=env.tenant_id,
        lead_id=lead_id,
        reason="after the upgrade",
        task_queue=env.task_queue,
    )
    assert joined == legacy_id
    hashed = env.client.get_workflow_handle(crm_sync_workflow_id(env.tenant_id, lead_id))
    with pytest.raises(RPCError) as missing:
        await hashed.describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND
    async with env.worker():
        first = await legacy.result()
        assert first is not None and first.reasons == ("before the upgrade", "after the upgrade")
        state = await legacy.query("state", result_type=CrmSyncState)
        assert (state.tenant_id, state.lead_id) == (env.tenant_id, lead_id)
        later = await request_crm_sync(
            env.client,
            tenant_id=env.tenant_id,
            lead_id=lead_id,
            reason="later",
            coalesce_seconds=0.2,
            task_queue=env.task_queue,
        )
        assert later == crm_sync_workflow_id(env.tenant_id, lead_id)
        second = await env.client.get_workflow_handle(later, result_type=SyncOutcome).result()
    assert second.reasons == ("later",) and second.status is SyncStatus.SUCCEEDED
    assert [run.status for run in await env.runs(lead_id)] == [SyncStatus.SUCCEEDED] * 2
