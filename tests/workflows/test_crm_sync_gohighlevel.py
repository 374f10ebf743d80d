"""CrmSyncWorkflow with GoHighLevel in the chain, on the real Temporal dev server, against the
wire-level GoHighLevel fake and the other CRM fakes over loopback HTTP."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.crm.activities import CrmActivities
from activities.crm.plugin import crm_plugin
from models.crm import CrmKind, StepStatus, SyncOutcome, SyncStatus
from models.db import Database
from models.erasure import ContactRef
from models.repo import crm as crm_repo
from models.settings import Settings
from tests.fakes.crm import HubSpotFake, SalesforceFake
from tests.fakes.gohighlevel import GoHighLevelFake, rate_limit_headers
from tests.workflows.test_crm_sync import HS_MAPPING, SF_MAPPING, Env, activity_summaries

pytestmark = pytest.mark.timeout(120)

LOCATION = "ve9EPM428h8vShlRW1KT"
SCORE_FIELD = "3sv6UEo51C9Bmpo1cKTq"
GHL_MAPPING = {
    "email": "email",
    "phone": "phone",
    "first_name": "firstName",
    "last_name": "lastName",
    "do_not_contact": "dnd",
    "score": f"customField.{SCORE_FIELD}",
}
GHL_CREDENTIALS = {"private_integration_token": "pit-1", "location_id": LOCATION}
SF_CREDENTIALS = {"client_id": "client-key", "client_secret": "client-secret"}


@pytest.fixture
def settings(settings_factory: Any, sqlite_url: str) -> Settings:
    made: Settings = settings_factory(sqlite_url)
    return made


@pytest.fixture
async def env(
    temporal_client: Client, sqlite_db: Database, settings: Settings, task_queue: str
) -> Env:
    e = Env(temporal_client, sqlite_db, settings, task_queue)
    await e.setup_tenant()
    return e


async def test_saga_writes_gohighlevel_and_hubspot_with_a_note(env: Env) -> None:
    with (
        GoHighLevelFake(token="pit-1", location_id=LOCATION) as ghl,
        HubSpotFake(token="pat") as hs,
    ):
        ghl_id = await env.integration(CrmKind.GOHIGHLEVEL, ghl.url, GHL_CREDENTIALS, GHL_MAPPING)
        await env.integration(CrmKind.HUBSPOT, hs.url, {"access_token": "pat"}, HS_MAPPING)
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
        assert [s.kind for s in outcome.steps] == [CrmKind.GOHIGHLEVEL, CrmKind.HUBSPOT]
        [contact] = ghl.contacts.values()
        assert (contact["firstName"], contact["lastName"]) == ("Ana", "Lima")
        assert contact["email"] == "ana@example.com" and contact["tags"] == ["lead-hot"]
        assert ghl.custom(contact["id"], SCORE_FIELD) == 72
        assert outcome.steps[0].remote_id == contact["id"] and outcome.steps[0].created
        # the conversation summary became a note on the contact
        assert [n["body"] for n in ghl.notes.values()] == [
            "Wants a test drive of the SUV on Saturday."
        ]
        async with env.db.session() as s:
            links = await crm_repo.links_of_lead(s, tenant_id=env.tenant_id, lead_id=lead_id)
        assert {link.integration_id: link.remote_id for link in links}[ghl_id] == contact["id"]
        summaries = await activity_summaries(handle)
        assert any(s.startswith("write gohighlevel") and "create lead" in s for s in summaries)


async def test_a_failing_later_crm_deletes_the_contact_gohighlevel_created(env: Env) -> None:
    with GoHighLevelFake(token="pit-1", location_id=LOCATION) as ghl, SalesforceFake() as sf:
        sf.reject = {"Rating": "WARM"}
        await env.integration(CrmKind.GOHIGHLEVEL, ghl.url, GHL_CREDENTIALS, GHL_MAPPING)
        await env.integration(CrmKind.SALESFORCE, sf.url, SF_CREDENTIALS, SF_MAPPING)
        lead_id = await env.lead(name="Eve Stone", email="eve@example.com", quality="WARM")
        async with env.worker():
            outcome = await (await env.start(lead_id)).result()

        assert outcome.status is SyncStatus.ROLLED_BACK, outcome
        assert [s.status for s in outcome.steps] == [StepStatus.COMPENSATED, StepStatus.FAILED]
        assert outcome.steps[0].created
        # the contact really was created, then deleted by the compensation
        assert len(ghl.calls("POST", "^/contacts/upsert$")) == 1
        [deleted] = ghl.calls("DELETE", r"^/contacts/[^/]+$")
        assert deleted.path == f"/contacts/{outcome.steps[0].remote_id}"
        assert ghl.contacts == {} and sf.leads == {}
        async with env.db.session() as s:
            links = await crm_repo.links_of_lead(s, tenant_id=env.tenant_id, lead_id=lead_id)
        assert all(link.remote_id is None for link in links)


async def test_a_failing_later_crm_restores_the_existing_contact_exactly(env: Env) -> None:
    with GoHighLevelFake(token="pit-1", location_id=LOCATION) as ghl, SalesforceFake() as sf:
        cid = ghl.add_contact(
            email="dan@example.com",
            firstName="Daniel",
            tags=["vip"],
            custom={SCORE_FIELD: 15},
        )
        before = {k: v for k, v in copy.deepcopy(ghl.contacts[cid]).items() if k != "dateUpdated"}
        sf.reject = {"Rating": "HOT"}
        await env.integration(CrmKind.GOHIGHLEVEL, ghl.url, GHL_CREDENTIALS, GHL_MAPPING)
        await env.integration(CrmKind.SALESFORCE, sf.url, SF_CREDENTIALS, SF_MAPPING)
        lead_id = await env.lead(name="Dan Brown", email="dan@example.com", score=90, quality="HOT")
        await env.change_lead(lead_id, do_not_contact=True)
        async with env.worker():
            outcome = await (await env.start(lead_id)).result()

        assert outcome.status is SyncStatus.ROLLED_BACK, outcome
        assert [s.status for s in outcome.steps] == [StepStatus.COMPENSATED, StepStatus.FAILED]
        # written (dnd, score 90, leadflow's tag) and then put back exactly as it was
        write, restore = ghl.calls("PUT", f"^/contacts/{cid}$")
        assert write.body["dnd"] is True and write.body["lastName"] == "Brown"
        assert write.body["customFields"] == [{"id": SCORE_FIELD, "field_value": 90}]
        assert restore.body["dnd"] is False and restore.body["lastName"] is None
        assert restore.body["customFields"] == [{"id": SCORE_FIELD, "field_value": 15}]
        [removed] = ghl.calls("DELETE", f"^/contacts/{cid}/tags$")
        assert removed.body == {"tags": ["lead-hot"]}
        after = {k: v for k, v in ghl.contacts[cid].items() if k != "dateUpdated"}
        assert after == {**before, "lastName": None}


async def test_a_rate_limited_write_waits_the_burst_window_and_succeeds(env: Env) -> None:
    with GoHighLevelFake(token="pit-1", location_id=LOCATION) as ghl:
        ghl.fail(
            "POST", "^/contacts/upsert$", 429, None, headers=rate_limit_headers(interval_ms=1000)
        )
        await env.integration(CrmKind.GOHIGHLEVEL, ghl.url, GHL_CREDENTIALS, GHL_MAPPING)
        lead_id = await env.lead(name="Bo", email="bo@example.com", score=10)
        async with env.worker():
            outcome = await (await env.start(lead_id)).result()
        assert outcome.status is SyncStatus.SUCCEEDED, outcome
        assert len(ghl.calls("POST", "^/contacts/upsert$")) == 2
        assert ghl.by_email("bo@example.com") is not None and len(ghl.contacts) == 1


async def test_erasure_deletes_the_synced_contact_and_then_finds_none(env: Env) -> None:
    with GoHighLevelFake(token="pit-1", location_id=LOCATION) as ghl:
        ghl_id = await env.integration(CrmKind.GOHIGHLEVEL, ghl.url, GHL_CREDENTIALS, GHL_MAPPING)
        lead_id = await env.lead(name="Ivy Ray", email="ivy@example.com")
        async with env.worker():
            outcome = await (await env.start(lead_id)).result()
        assert outcome.status is SyncStatus.SUCCEEDED
        [contact_id] = ghl.contacts
        async with httpx.AsyncClient() as http:
            acts = CrmActivities(
                settings=env.settings, db=env.db, http=http, adapters=crm_plugin().crm_adapters
            )
            ref = ContactRef(tenant_id=env.tenant_id, lead_id=lead_id)
            erased = await ActivityEnvironment().run(acts.erase_crm_records, ref)
            again = await ActivityEnvironment().run(acts.erase_crm_records, ref)
        [record] = erased.records
        assert (record.integration_id, record.outcome, record.remote_id) == (
            ghl_id,
            "deleted",
            contact_id,
        )
        assert ghl.contacts == {}
        # gone is done: a second erasure finds nothing to delete
        assert [r.outcome for r in again.records] == ["not_found"]
