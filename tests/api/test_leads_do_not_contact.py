"""Do-not-contact through the API: the operator's explicit set and lift (who and why on record,
synced to every CRM through a real CRM worker and the wire-level CRM fakes), its bad input, and a
PATCH that may not lift it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from activities.crm.activities import CrmActivities
from activities.crm.plugin import crm_plugin
from api.app import create_app
from models import task_queues
from models.common import Channel, Role, Stage
from models.conversation import RecordTurnInput, conversation_workflow_id, lead_id_for
from models.db import Database
from models.lead_service import do_not_contact_reason
from models.messages import TranscriptEntry
from models.repo import conversations as conversation_repo
from models.repo import leads as lead_repo
from models.settings import Settings
from tests.conftest import make_tenant
from tests.fakes.crm import ChatwootCrmFake, HubSpotFake, PipedriveFake, SalesforceFake
from workflows.crm_sync import CrmSyncWorkflow

pytestmark = pytest.mark.timeout(120)

CONTACT = "31612345678@c.us"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
async def api(
    sqlite_db: Database,
    sqlite_url: str,
    settings_factory: Callable[..., Settings],
    temporal_client: Client,
) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    settings = settings_factory(sqlite_url)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        app.state.leadflow.temporal = temporal_client
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://leadflow.test") as http:
            yield http, settings


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def opted_out_lead(db: Database, tenant_id: str) -> str:
    """A WhatsApp lead whose conversation recorded its opt-out (as the workflow records it)."""
    record = RecordTurnInput(
        conversation_id=conversation_workflow_id(tenant_id, Channel.WAHA, CONTACT),
        tenant_id=tenant_id,
        channel=Channel.WAHA,
        contact=CONTACT,
        contact_name="Ana Lima",
        turn_key="turn-1",
        entries=(
            TranscriptEntry(
                role=Role.LEAD, text="Stop messaging me", at=T0, provider_message_id="w-1"
            ),
        ),
        stage=Stage.CLOSED,
        lead_id=lead_id_for(tenant_id, Channel.WAHA, CONTACT),
        fields={"email": "ana@example.com"},
        turns=1,
        do_not_contact=True,
    )
    async with db.session() as session:
        assert await conversation_repo.record_turn(session, record=record) is True
    return record.lead_id


async def test_bad_input_unknown_leads_and_a_patch_that_would_lift(
    api: tuple[httpx.AsyncClient, Settings], sqlite_db: Database
) -> None:
    http, _ = api
    tid, key = await make_tenant(sqlite_db)
    _, other_key = await make_tenant(sqlite_db)
    lead_id = await opted_out_lead(sqlite_db, tid)
    url = f"/api/v1/leads/{lead_id}/do-not-contact"
    lift = {"do_not_contact": False, "reason": "asked to hear from us again"}

    for bad in (
        {"do_not_contact": False},  # no reason
        {"do_not_contact": False, "reason": ""},
        {"do_not_contact": False, "reason": "   "},
        {"do_not_contact": "false", "reason": "x"},  # a string is not a decision
        {"reason": "x"},
        {**lift, "unknown": 1},
        {**lift, "reason": "ok\x00"},
        {**lift, "reason": "x" * 501},
        {**lift, "by": "y" * 121},
    ):
        refused = await http.post(url, headers=auth(key), json=bad)
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json()["error"] == "invalid request"
    not_json = await http.post(
        url, headers={**auth(key), "content-type": "application/json"}, content=b"{"
    )
    assert not_json.status_code == 422

    assert (await http.post(url, json=lift)).status_code == 401
    unknown = await http.post("/api/v1/leads/nope/do-not-contact", headers=auth(key), json=lift)
    assert (unknown.status_code, unknown.json()["error"]) == (404, "unknown lead")
    foreign = await http.post(url, headers=auth(other_key), json=lift)
    assert foreign.status_code == 404

    # A PATCH may set it, not lift it: that needs the reason above.
    patched = await http.patch(
        f"/api/v1/leads/{lead_id}", headers=auth(key), json={"do_not_contact": False}
    )
    assert patched.status_code == 422
    assert patched.json()["error"] == "lifting do-not-contact needs a reason"
    assert f"/api/v1/leads/{lead_id}/do-not-contact" in patched.json()["detail"]
    async with sqlite_db.session() as session:
        lead = await lead_repo.get_lead(session, tenant_id=tid, lead_id=lead_id)
    assert lead is not None and lead.do_not_contact is True and lead.version == 2


async def crm_worker(
    client: Client, db: Database, settings: Settings, http: httpx.AsyncClient
) -> Worker:
    acts = CrmActivities(settings=settings, db=db, http=http, adapters=crm_plugin().crm_adapters)
    return Worker(
        client,
        task_queue=task_queues.CRM,
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


async def test_the_opt_out_and_its_lift_reach_every_crm(
    api: tuple[httpx.AsyncClient, Settings], sqlite_db: Database, temporal_client: Client
) -> None:
    """New connections map do-not-contact by default: HubSpot and Salesforce a custom property,
    Pipedrive the person's marketing status, Chatwoot a contact attribute."""
    http, settings = api
    tid, key = await make_tenant(sqlite_db)
    lead_id = await opted_out_lead(sqlite_db, tid)
    with (
        HubSpotFake(token="pat") as hs,
        SalesforceFake() as sf,
        PipedriveFake(api_token="pd") as pd,
        ChatwootCrmFake(api_token="cw", account_id=1) as cw,
    ):
        for kind, base, credentials in (
            ("hubspot", hs.url, {"access_token": "pat"}),
            ("salesforce", sf.url, {"client_id": "client-key", "client_secret": "client-secret"}),
            ("pipedrive", pd.url, {"api_token": "pd"}),
            ("chatwoot", cw.url, {"api_token": "cw", "account_id": 1}),
        ):
            created = await http.post(
                "/api/v1/integrations",
                headers=auth(key),
                json={"kind": kind, "name": kind, "base_url": base, "credentials": credentials},
            )
            assert created.status_code == 201, created.text

        async def sync(workflow_id: str) -> None:
            result: Any = await temporal_client.get_workflow_handle(workflow_id).result()
            assert result["status"] == "succeeded", result

        async with httpx.AsyncClient() as crm_http:
            async with await crm_worker(temporal_client, sqlite_db, settings, crm_http):
                # The opt-out the turn recorded (the workflow requests this sync).
                requested = await http.post(f"/api/v1/leads/{lead_id}/sync", headers=auth(key))
                await sync(requested.json()["workflow_id"])
                (contact,) = hs.contacts.values()
                (sf_lead,) = sf.leads.values()
                (person,) = pd.persons.values()
                (cw_contact,) = cw.contacts.values()
                assert contact["properties"]["leadflow_do_not_contact"] == "true"
                assert contact["properties"]["phone"] == "+31612345678"  # from the WhatsApp id
                assert sf_lead["Leadflow_Do_Not_Contact__c"] is True
                assert person["marketing_status"] == "unsubscribed"
                assert cw_contact["custom_attributes"]["do_not_contact"] is True

                lifted = await http.post(
                    f"/api/v1/leads/{lead_id}/do-not-contact",
                    headers=auth(key),
                    json={
                        "do_not_contact": False,
                        "reason": "called the showroom, wants offers again",
                        "by": "Sanne",
                    },
                )
                assert lifted.status_code == 200, lifted.text
                body = lifted.json()
                assert (body["id"], body["do_not_contact"], body["version"]) == (lead_id, False, 3)
                assert (body["changed"], body["conversations_closed"]) == (True, 0)
                await sync(body["sync_workflow_id"])
                assert contact["properties"]["leadflow_do_not_contact"] == "false"
                assert sf_lead["Leadflow_Do_Not_Contact__c"] is False
                # Lifting leadflow's opt-out is not consent to Pipedrive's marketing.
                assert person["marketing_status"] == "unsubscribed"
                assert cw_contact["custom_attributes"]["do_not_contact"] is False

                # Again: already lifted, nothing written, nothing synced.
                again = await http.post(
                    f"/api/v1/leads/{lead_id}/do-not-contact",
                    headers=auth(key),
                    json={"do_not_contact": False, "reason": "double click"},
                )
                assert again.status_code == 200
                assert (again.json()["changed"], again.json()["sync_workflow_id"]) == (False, None)
                assert again.json()["version"] == 3

                # An operator sets it again, explicitly: synced as well.
                reset = await http.post(
                    f"/api/v1/leads/{lead_id}/do-not-contact",
                    headers=auth(key),
                    json={"do_not_contact": True, "reason": "complained by phone"},
                )
                assert reset.status_code == 200, reset.text
                assert (reset.json()["do_not_contact"], reset.json()["version"]) == (True, 4)
                await sync(reset.json()["sync_workflow_id"])
                assert contact["properties"]["leadflow_do_not_contact"] == "true"
                assert cw_contact["custom_attributes"]["do_not_contact"] is True

    # Who decided and why, in the conversation's transcript.
    async with sqlite_db.session() as session:
        rows = await conversation_repo.transcript(
            session, conversation_id=conversation_workflow_id(tid, Channel.WAHA, CONTACT)
        )
    assert [(m.role, m.text) for m in rows] == [
        ("lead", "Stop messaging me"),
        ("system", "Do-not-contact lifted by Sanne: called the showroom, wants offers again"),
        ("system", "Do-not-contact set by operator: complained by phone"),
    ]
    detail = await http.get(f"/api/v1/leads/{lead_id}", headers=auth(key))
    assert detail.json()["recent_syncs"][0]["status"] == "succeeded"


async def test_outreach_to_an_opted_out_lead_is_refused_and_starts_nothing(
    api: tuple[httpx.AsyncClient, Settings], sqlite_db: Database, temporal_client: Client
) -> None:
    http, _ = api
    tid, key = await make_tenant(sqlite_db)
    lead_id = await opted_out_lead(sqlite_db, tid)
    conv_id = conversation_workflow_id(tid, Channel.WAHA, CONTACT)

    # The same person written as people write phones, and through the Cloud API: both refused.
    for channel, contact in (("waha", "+31 6 1234 5678"), ("whatsapp", "+31612345678")):
        refused = await http.post(
            "/api/v1/conversations",
            headers=auth(key),
            json={"channel": channel, "contact": contact, "text": "Our spring offers!"},
        )
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "do not contact"
        assert (
            "opted out" in refused.json()["detail"]
            or "do-not-contact" in (refused.json()["detail"])
        ), refused.text
    # Nothing was started for the refused outreach (describe reads the workflow itself, not the
    # lagging visibility store).
    with pytest.raises(RPCError) as missing:
        await temporal_client.get_workflow_handle(conv_id).describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND

    # A contact id that is no address: 422, nothing started.
    bad = await http.post(
        "/api/v1/conversations",
        headers=auth(key),
        json={"channel": "waha", "contact": "3161\x002345678@c.us", "text": "hi"},
    )
    assert bad.status_code == 422, bad.text

    # Lifted by an operator: the outreach is no longer refused on do-not-contact grounds.
    lifted = await http.post(
        f"/api/v1/leads/{lead_id}/do-not-contact",
        headers=auth(key),
        json={"do_not_contact": False, "reason": "asked us to write again", "by": "Sanne"},
    )
    assert lifted.status_code == 200, lifted.text
    async with sqlite_db.session() as session:
        assert (
            await do_not_contact_reason(session, tenant_id=tid, channel="waha", contact=CONTACT)
            is None
        )
