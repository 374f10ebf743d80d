"""CRM webhooks in: HubSpot (signature v3, batches), Pipedrive (HTTP Basic), Chatwoot contacts.
Changes update the lead; do-not-contact closes its conversation (a real signal on the dev
server); echoes of leadflow's own writes are recognised and ignored."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import httpx
from temporalio.client import WorkflowHandle
from temporalio.testing import ActivityEnvironment

from activities.crm.activities import CrmActivities
from activities.crm.plugin import crm_plugin
from api.webhooks.hubspot import signature_v3
from models.conversation import ConversationInput, conversation_workflow_id
from models.crm import CrmKind, CrmWriteInput, idempotency_key
from models.repo import crm as crm_repo
from models.repo import leads as lead_repo
from models.tables import Conversation, Lead
from tests.api.webhooks.conftest import Harness
from tests.conftest import TEST_SECRET
from tests.fakes.crm import HubSpotFake

HS_SECRET = "hubspot-app-secret"
HS_MAPPING = {"email": "email", "score": "leadflow_score", "do_not_contact": "leadflow_dnc"}


def hs_headers(
    path: str, body: bytes, *, secret: str = HS_SECRET, ts_ms: int | None = None
) -> dict[str, str]:
    ts = str(int(time.time() * 1000) if ts_ms is None else ts_ms)
    uri = f"http://leadflow.test{path}"
    return {
        "X-HubSpot-Signature-v3": signature_v3(secret, "POST", uri, body, ts),
        "X-HubSpot-Request-Timestamp": ts,
        "Content-Type": "application/json",
    }


async def setup(
    h: Harness,
    kind: CrmKind,
    credentials: dict[str, Any],
    mapping: dict[str, str],
    base_url: str | None = None,
) -> tuple[str, str, str, str]:
    """A tenant, one integration, a lead linked to remote record "777", and its conversation."""
    tid, _ = await h.tenant()
    async with h.db.session() as s:
        integration = await crm_repo.create_integration(
            s,
            tenant_id=tid,
            kind=kind,
            name="crm",
            credentials=credentials,
            field_mapping=mapping,
            base_url=base_url,
            secret_key=TEST_SECRET,
        )
        lead = await lead_repo.create_lead(
            s,
            tenant_id=tid,
            channel="waha",
            address="4917@c.us",
            name="Lia",
            email="lia@example.com",
            score=40,
        )
        await crm_repo.save_link(
            s, tenant_id=tid, integration_id=integration.id, lead_id=lead.id, remote_id="777"
        )
        conv_id = conversation_workflow_id(tid, "waha", "4917@c.us")
        s.add(
            Conversation(
                id=conv_id, tenant_id=tid, channel="waha", contact="4917@c.us", lead_id=lead.id
            )
        )
        await s.commit()
        return tid, integration.id, lead.id, conv_id


async def running_conversation(h: Harness, tid: str, conv_id: str) -> WorkflowHandle[Any, Any]:
    """The conversation's workflow execution, started by name with no worker polling: its
    history records every signal it receives."""
    return await h.temporal.start_workflow(
        "ConversationWorkflow",
        ConversationInput(tenant_id=tid, channel="waha", contact="4917@c.us"),
        id=conv_id,
        task_queue=f"idle-{uuid.uuid4().hex[:8]}",
    )


async def lead_of(h: Harness, tid: str, lead_id: str) -> Lead:
    async with h.db.session() as s:
        lead = await lead_repo.get_lead(s, tenant_id=tid, lead_id=lead_id)
        assert lead is not None
        return lead


async def test_hubspot_batch_sets_do_not_contact_and_closes_the_conversation(
    harness: Harness,
) -> None:
    tid, _, lead_id, conv_id = await setup(
        harness, CrmKind.HUBSPOT, {"access_token": "pat", "client_secret": HS_SECRET}, HS_MAPPING
    )
    handle = await running_conversation(harness, tid, conv_id)
    events = [
        {
            "eventId": 1,
            "subscriptionId": 12345,
            "portalId": 62515,
            "occurredAt": 1564113600000,
            "subscriptionType": "contact.propertyChange",
            "attemptNumber": 0,
            "objectId": 777,
            "changeSource": "CRM",
            "propertyName": "leadflow_dnc",
            "propertyValue": "true",
            "appId": 54321,
        },
        {
            "eventId": 2,
            "subscriptionId": 12345,
            "portalId": 62515,
            "occurredAt": 1564113600001,
            "subscriptionType": "contact.propertyChange",
            "attemptNumber": 0,
            "objectId": 777,
            "changeSource": "CRM",
            "propertyName": "leadflow_score",
            "propertyValue": "99",
            "appId": 54321,
        },
        {
            "eventId": 3,
            "subscriptionId": 12345,
            "portalId": 62515,
            "occurredAt": 1564113600002,
            "subscriptionType": "contact.propertyChange",
            "attemptNumber": 0,
            "objectId": 123,
            "changeSource": "CRM",
            "propertyName": "leadflow_dnc",
            "propertyValue": "true",
            "appId": 54321,
        },
        {
            "eventId": 4,
            "subscriptionId": 1,
            "portalId": 62515,
            "occurredAt": 1564113600003,
            "subscriptionType": "deal.creation",
            "attemptNumber": 0,
            "objectId": 5,
            "appId": 54321,
        },
    ]
    body = json.dumps(events).encode()
    path = f"/webhooks/hubspot/{tid}"
    try:
        response = await harness.http.post(path, content=body, headers=hs_headers(path, body))
        assert response.status_code == 200, response.text
        report = response.json()
        assert report["applied"] == 1 and report["conversations_closed"] == 1
        # score is leadflow's own verdict; record 123 is not ours; the deal is not a contact
        assert report["ignored"] == 3
        lead = await lead_of(harness, tid, lead_id)
        assert lead.do_not_contact is True and lead.score == 40 and lead.version == 2
        signals = await harness.signals(conv_id)
        assert signals == [("close", [{"reason": "do not contact set in hubspot 'crm'"}])]
    finally:
        await handle.terminate()


async def test_hubspot_signature_invalid_expired_and_missing_are_401(harness: Harness) -> None:
    tid, _, lead_id, _ = await setup(
        harness, CrmKind.HUBSPOT, {"access_token": "pat", "client_secret": HS_SECRET}, HS_MAPPING
    )
    body = json.dumps(
        [
            {
                "subscriptionType": "contact.propertyChange",
                "objectId": 777,
                "propertyName": "leadflow_dnc",
                "propertyValue": "true",
            }
        ]
    ).encode()
    path = f"/webhooks/hubspot/{tid}"
    wrong = await harness.http.post(
        path, content=body, headers=hs_headers(path, body, secret="nope")
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid signature"
    old = int(time.time() * 1000) - 6 * 60 * 1000  # correctly signed, but six minutes old
    expired = await harness.http.post(path, content=body, headers=hs_headers(path, body, ts_ms=old))
    assert expired.status_code == 401 and expired.json()["error"] == "expired timestamp"
    tampered = await harness.http.post(
        path, content=body.replace(b"true", b"false"), headers=hs_headers(path, body)
    )
    assert tampered.status_code == 401
    missing = await harness.http.post(path, content=body)
    assert missing.status_code == 401
    assert (await lead_of(harness, tid, lead_id)).do_not_contact is False
    unknown = await harness.http.post(
        "/webhooks/hubspot/no-such-tenant",
        content=body,
        headers=hs_headers("/webhooks/hubspot/no-such-tenant", body),
    )
    assert unknown.status_code == 404
    bad_json = b'{"not": "a batch"}'
    malformed = await harness.http.post(path, content=bad_json, headers=hs_headers(path, bad_json))
    assert malformed.status_code == 422


async def test_hubspot_echo_of_our_own_write_is_ignored(harness: Harness) -> None:
    with HubSpotFake(token="pat") as hs:
        remote = hs.add_contact({"email": "lia@example.com"})
        tid, integration_id, lead_id, _ = await setup(
            harness,
            CrmKind.HUBSPOT,
            {"access_token": "pat", "client_secret": HS_SECRET},
            {"email": "email", "score": "leadflow_score", "name": "firstname"},
            base_url=hs.url,
        )
        async with harness.db.session() as s:
            await crm_repo.save_link(
                s, tenant_id=tid, integration_id=integration_id, lead_id=lead_id, remote_id=remote
            )
            snapshot = await lead_repo.lead_snapshot(s, tenant_id=tid, lead_id=lead_id)
            integration = await crm_repo.get_integration(
                s, tenant_id=tid, integration_id=integration_id
            )
        assert snapshot is not None and integration is not None
        # the real write activity: leadflow writes firstname=Lia, score=40 to HubSpot
        async with httpx.AsyncClient() as http:
            acts = CrmActivities(
                settings=harness.app.state.leadflow.settings,
                db=harness.db,
                http=http,
                adapters=crm_plugin().crm_adapters,
            )
            await ActivityEnvironment().run(
                acts.write_crm_record,
                CrmWriteInput(
                    connection=crm_repo.integration_view(integration),
                    lead=snapshot,
                    idempotency_key=idempotency_key(tid, lead_id, 1, integration_id),
                ),
            )
        assert hs.contacts[remote]["properties"]["firstname"] == "Lia"
        # HubSpot then tells us about "its" change: our own write coming back
        echo = [
            {
                "subscriptionType": "contact.propertyChange",
                "objectId": int(remote),
                "propertyName": "firstname",
                "propertyValue": "Lia",
                "occurredAt": 1,
                "eventId": 1,
            },
        ]
        body = json.dumps(echo).encode()
        path = f"/webhooks/hubspot/{tid}"
        response = await harness.http.post(path, content=body, headers=hs_headers(path, body))
        assert response.json()["echoes"] == 1 and response.json()["applied"] == 0
        assert (await lead_of(harness, tid, lead_id)).version == 1
        # a real edit by a person in HubSpot is applied
        edit = [dict(echo[0], propertyValue="Liana")]
        body = json.dumps(edit).encode()
        response = await harness.http.post(path, content=body, headers=hs_headers(path, body))
        assert response.json()["applied"] == 1
        lead = await lead_of(harness, tid, lead_id)
        assert lead.name == "Liana" and lead.version == 2


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_pipedrive_person_change_auth_and_echo(harness: Harness) -> None:
    custom = "d4de1c1518b4531717c676029a45911c340390a6"
    tid, integration_id, lead_id, conv_id = await setup(
        harness,
        CrmKind.PIPEDRIVE,
        {"api_token": "pd", "webhook_user": "leadflow", "webhook_password": "hook-pass"},
        {"email": "email", "name": "name", "do_not_contact": custom},
    )
    handle = await running_conversation(harness, tid, conv_id)
    path = f"/webhooks/pipedrive/{tid}"
    v2 = {
        "meta": {"action": "change", "entity": "person", "entity_id": "777", "version": "2.0"},
        "data": {
            "id": 777,
            "name": "Lia",
            "emails": [{"value": "lia@new.example", "primary": True}],
            "custom_fields": {custom: True},
        },
        "previous": {
            "emails": [{"value": "lia@example.com", "primary": True}],
            "custom_fields": {custom: None},
        },
    }
    try:
        denied = await harness.http.post(path, json=v2, headers=basic("leadflow", "wrong"))
        assert denied.status_code == 401
        assert (await harness.http.post(path, json=v2)).status_code == 401
        # our own write of the name (an echo) is dropped, the e-mail and the flag are applied
        async with harness.db.session() as s:
            await crm_repo.add_write_markers(
                s,
                tenant_id=tid,
                integration_id=integration_id,
                remote_id="777",
                values={"name": "Lia"},
            )
        response = await harness.http.post(path, json=v2, headers=basic("leadflow", "hook-pass"))
        assert response.status_code == 200, response.text
        assert response.json()["applied"] == 2 and response.json()["echoes"] == 1
        lead = await lead_of(harness, tid, lead_id)
        assert lead.email == "lia@new.example" and lead.do_not_contact is True
        assert [name for name, _ in await harness.signals(conv_id)] == ["close"]
    finally:
        await handle.terminate()


async def test_chatwoot_contact_update_applies_attributes_and_ignores_echo(
    harness: Harness,
) -> None:
    tid, integration_id, lead_id, _ = await setup(
        harness,
        CrmKind.CHATWOOT,
        {"api_token": "cw", "account_id": 1},
        {"score": "lead_score", "do_not_contact": "do_not_contact", "fields.budget": "budget"},
    )
    async with harness.db.session() as s:
        await crm_repo.add_write_markers(
            s,
            tenant_id=tid,
            integration_id=integration_id,
            remote_id="777",
            values={"budget": "30000"},
        )
    payload = {
        "event": "contact_updated",
        "id": 777,
        "name": "Lia",
        "email": "lia@example.com",
        "custom_attributes": {"lead_score": 40, "budget": "30000", "do_not_contact": False},
        "changed_attributes": [
            {
                "custom_attributes": {
                    "previous_value": {"lead_score": 10},
                    "current_value": {"lead_score": 40, "budget": "30000", "do_not_contact": False},
                }
            }
        ],
    }
    response = await harness.http.post(f"/webhooks/chatwoot/{tid}", json=payload)
    assert response.status_code < 300, response.text
    report = response.json()
    assert report["echoes"] == 1  # budget: our own write
    lead = await lead_of(harness, tid, lead_id)
    assert lead.fields.get("budget") is None and lead.do_not_contact is False
    assert lead.score == 40  # score is never taken from a CRM (and did not change here)
