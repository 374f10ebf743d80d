"""Inbound CRM webhooks addressed to a disabled connection, for each kind (HubSpot, Pipedrive,
GoHighLevel, Chatwoot contact events), on SQLite and PostgreSQL: the signature is still checked
first (401), a correctly signed event is acknowledged (200) with the reason and acts on nothing —
the lead and its CRM link are as they were, its running conversation received no signal, no
workflow of the tenant was started — and after re-enabling the connection (the real PATCH) the
same event acts: the lead is opted out, the conversation closed, a deleted record's link
forgotten. A webhook secret shared with a disabled connection does not hide the enabled one."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from temporalio.client import Client

from api.app import create_app
from models.conversation import conversation_workflow_id
from models.crm import CrmKind, crm_sync_workflow_id
from models.db import Database
from models.repo import crm as crm_repo
from models.repo import leads as lead_repo
from models.settings import Settings
from models.tables import Conversation
from models.tenant import ChatwootSettings, TenantSettings
from models.workflow_ids import CRM_SYNC_PREFIX, PREFIX, lead_workflow_prefix
from tests.api.webhooks import test_gohighlevel as ghl
from tests.api.webhooks.conftest import Harness, chatwoot_sign
from tests.api.webhooks.test_crm_webhooks import HS_MAPPING, HS_SECRET, basic, hs_headers
from tests.api.webhooks.test_crm_webhooks import running_conversation as start_conversation
from tests.conftest import TEST_SECRET

pytestmark = pytest.mark.timeout(120)

REMOTE = "777"
CHATWOOT_SECRET = "chatwoot-webhook-secret"
PD_DNC = "d4de1c1518b4531717c676029a45911c340390a6"
Request = tuple[str, bytes, dict[str, str]]  # path, body, headers


@dataclass(frozen=True)
class Kind:
    """One inbound CRM webhook: its connection and the events a person's edits send."""

    kind: CrmKind
    credentials: dict[str, Any]
    mapping: dict[str, str]
    # (tenant id) -> the signed requests: opt the contact out, then (where the CRM says so)
    # delete it
    events: Callable[[str], list[Request]]
    # (tenant id) -> the first request, signed with the wrong secret or key
    forged: Callable[[str], Request]
    deletes: bool
    tenant_settings: TenantSettings | None = None


def _hubspot_events(tid: str) -> list[Request]:
    path = f"/webhooks/hubspot/{tid}"
    batch = [
        {
            "eventId": 1,
            "subscriptionType": "contact.propertyChange",
            "objectId": int(REMOTE),
            "propertyName": "leadflow_dnc",
            "propertyValue": "true",
            "occurredAt": 1,
        },
        {"eventId": 2, "subscriptionType": "contact.deletion", "objectId": int(REMOTE)},
    ]
    body = json.dumps(batch).encode()
    return [(path, body, hs_headers(path, body))]


def _hubspot_forged(tid: str) -> Request:
    path, body, _ = _hubspot_events(tid)[0]
    return path, body, hs_headers(path, body, secret="not-the-app-secret")


def _pipedrive_events(tid: str, password: str = "hook-pass") -> list[Request]:
    path = f"/webhooks/pipedrive/{tid}"
    headers = {**basic("leadflow", password), "Content-Type": "application/json"}
    change = {
        "meta": {"action": "change", "entity": "person", "entity_id": REMOTE, "version": "2.0"},
        "data": {"id": int(REMOTE), "name": "Lia", "custom_fields": {PD_DNC: True}},
        "previous": {"custom_fields": {PD_DNC: None}},
    }
    delete = {
        "meta": {"action": "delete", "entity": "person", "entity_id": REMOTE, "version": "2.0"},
        "data": None,
        "previous": {"id": int(REMOTE), "name": "Lia"},
    }
    return [(path, json.dumps(body).encode(), headers) for body in (change, delete)]


def _gohighlevel_events(tid: str) -> list[Request]:
    path = f"/webhooks/gohighlevel/{tid}"
    bodies = [
        json.dumps(ghl.event("ContactDndUpdate", REMOTE, dnd=True)).encode(),
        json.dumps(ghl.event("ContactDelete", REMOTE)).encode(),
    ]
    return [(path, body, ghl.ed_signed(body)) for body in bodies]


def _gohighlevel_forged(tid: str) -> Request:
    path, body, _ = _gohighlevel_events(tid)[0]
    signature = base64.b64encode(Ed25519PrivateKey.generate().sign(body)).decode()
    return path, body, {"x-ghl-signature": signature, "Content-Type": "application/json"}


def _chatwoot_event(tid: str, secret: str = CHATWOOT_SECRET) -> Request:
    payload = {
        "event": "contact_updated",
        "id": int(REMOTE),
        "name": "Lia",
        "email": "lia@example.com",
        "custom_attributes": {"do_not_contact": True},
        "changed_attributes": [
            {
                "custom_attributes": {
                    "previous_value": {"do_not_contact": False},
                    "current_value": {"do_not_contact": True},
                }
            }
        ],
    }
    body = json.dumps(payload).encode()
    headers = {**chatwoot_sign(secret, body), "Content-Type": "application/json"}
    return f"/webhooks/chatwoot/{tid}", body, headers


KINDS = {
    "hubspot": Kind(
        CrmKind.HUBSPOT,
        {"access_token": "pat", "client_secret": HS_SECRET},
        HS_MAPPING,
        _hubspot_events,
        _hubspot_forged,
        deletes=True,
    ),
    "pipedrive": Kind(
        CrmKind.PIPEDRIVE,
        {"api_token": "pd", "webhook_user": "leadflow", "webhook_password": "hook-pass"},
        {"email": "email", "name": "name", "do_not_contact": PD_DNC},
        _pipedrive_events,
        lambda tid: _pipedrive_events(tid, password="wrong")[0],
        deletes=True,
    ),
    "gohighlevel": Kind(
        CrmKind.GOHIGHLEVEL,
        ghl.CREDENTIALS,
        ghl.MAPPING,
        _gohighlevel_events,
        _gohighlevel_forged,
        deletes=True,
    ),
    "chatwoot": Kind(
        CrmKind.CHATWOOT,
        {"api_token": "cw", "account_id": 1},
        {"do_not_contact": "do_not_contact"},
        lambda tid: [_chatwoot_event(tid)],
        lambda tid: _chatwoot_event(tid, secret="wrong"),
        deletes=False,
        # the Chatwoot route checks the account's webhook secret (tenant settings)
        tenant_settings=TenantSettings(
            chatwoot=ChatwootSettings(webhook_secret=CHATWOOT_SECRET),
            allow_unsigned_webhooks=False,
        ),
    ),
}


@pytest.fixture
async def harness(
    db: Database,
    database_url: str,
    settings_factory: Callable[..., Settings],
    temporal_client: Client,
) -> AsyncIterator[Harness]:
    """tests/api/webhooks/conftest.py's harness on both databases (`db` is parametrised)."""
    settings = settings_factory(database_url, max_webhook_bytes=64_000)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        app.state.leadflow.temporal = temporal_client
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://leadflow.test") as http:
            yield Harness(app=app, http=http, db=db, temporal=temporal_client)


@dataclass(frozen=True)
class Setup:
    tenant_id: str
    api_key: str
    integration_id: str
    lead_id: str
    conversation_id: str


async def _setup(h: Harness, kind: Kind) -> Setup:
    """A tenant with an API key, one connection of `kind`, a lead linked to record 777, and the
    lead's conversation row (tests/api/webhooks/test_crm_webhooks.py's setup, plus the key)."""
    tid, key = await h.tenant(kind.tenant_settings)
    async with h.db.session() as s:
        integration = await crm_repo.create_integration(
            s,
            tenant_id=tid,
            kind=kind.kind,
            name="crm",
            credentials=kind.credentials,
            field_mapping=kind.mapping,
            base_url=None,
            secret_key=TEST_SECRET,
        )
        lead = await lead_repo.create_lead(
            s,
            tenant_id=tid,
            channel="waha",
            address="4917@c.us",
            name="Lia",
            email="lia@example.com",
        )
        await crm_repo.save_link(
            s, tenant_id=tid, integration_id=integration.id, lead_id=lead.id, remote_id=REMOTE
        )
        conversation = conversation_workflow_id(tid, "waha", "4917@c.us")
        s.add(
            Conversation(
                id=conversation, tenant_id=tid, channel="waha", contact="4917@c.us", lead_id=lead.id
            )
        )
        await s.commit()
    return Setup(tid, key, integration.id, lead.id, conversation)


async def _set_enabled(h: Harness, setup: Setup, enabled: bool) -> None:
    response = await h.http.patch(
        f"/api/v1/integrations/{setup.integration_id}",
        headers={"Authorization": f"Bearer {setup.api_key}"},
        json={"enabled": enabled},
    )
    assert response.status_code == 200 and response.json()["enabled"] is enabled, response.text


async def _rows(h: Harness, setup: Setup) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The lead's row and its CRM links, as stored."""
    async with h.db.session() as s:
        lead = await lead_repo.get_lead(s, tenant_id=setup.tenant_id, lead_id=setup.lead_id)
        links = await crm_repo.links_of_lead(s, tenant_id=setup.tenant_id, lead_id=setup.lead_id)
    assert lead is not None
    return lead.model_dump(), [link.model_dump() for link in links]


async def _tenant_workflows(h: Harness, tid: str) -> list[str]:
    ids: list[str] = []
    for prefix in (lead_workflow_prefix(PREFIX, tid), lead_workflow_prefix(CRM_SYNC_PREFIX, tid)):
        query = f'WorkflowId STARTS_WITH "{prefix}"'
        ids += [wf.id async for wf in h.temporal.list_workflows(query)]
    return sorted(ids)


async def _post(h: Harness, request: Request) -> httpx.Response:
    path, body, headers = request
    return await h.http.post(path, content=body, headers=headers)


@pytest.mark.parametrize("name", list(KINDS))
async def test_an_event_for_a_disabled_connection_is_acknowledged_and_ignored(
    harness: Harness, name: str
) -> None:
    kind = KINDS[name]
    setup = await _setup(harness, kind)
    tid = setup.tenant_id
    handle = await start_conversation(harness, tid, setup.conversation_id)
    try:
        await _set_enabled(harness, setup, False)
        before = await _rows(harness, setup)

        # authenticated first: a forged request is 401, disabled or not
        forged = await _post(harness, kind.forged(tid))
        assert forged.status_code == 401, forged.text

        events = kind.events(tid)
        for request in events:
            response = await _post(harness, request)
            assert response.status_code == 200, response.text
            answer = response.json()
            assert answer["applied"] == 0 and answer["leads_updated"] == [], answer
            assert answer["conversations_closed"] == 0
            assert answer["ignored_reasons"] == [f"{name} connection 'crm' is disabled"], answer
        assert await _rows(harness, setup) == before
        assert await harness.signals(setup.conversation_id) == []
        await harness.assert_not_started(crm_sync_workflow_id(tid, setup.lead_id))
        assert await _tenant_workflows(harness, tid) == [setup.conversation_id]

        # enabled again: the same events act
        await _set_enabled(harness, setup, True)
        first = await _post(harness, events[0])
        assert first.status_code == 200, first.text
        assert first.json()["leads_updated"] == [setup.lead_id], first.text
        assert first.json()["conversations_closed"] == 1 and first.json()["ignored_reasons"] == []
        for request in events[1:]:
            response = await _post(harness, request)
            assert response.status_code == 200 and response.json()["applied"] == 1, response.text
        lead, links = await _rows(harness, setup)
        assert lead["do_not_contact"] is True and lead["version"] == before[0]["version"] + 1
        [link] = links
        if kind.deletes:
            assert (link["remote_id"], link["outcome"]) == (None, "deleted_in_crm")
        else:
            assert link["remote_id"] == REMOTE
        [(signal, _)] = await harness.signals(setup.conversation_id)
        assert signal == "close"
    finally:
        await handle.terminate()


async def test_a_secret_shared_with_a_disabled_connection_goes_to_the_enabled_one(
    harness: Harness,
) -> None:
    """Two HubSpot connections signed by the same app secret, the first one disabled: the event
    is taken by the enabled one, not ignored because the disabled one happened to match first."""
    kind = KINDS["hubspot"]
    setup = await _setup(harness, kind)
    async with harness.db.session() as s:
        second = await crm_repo.create_integration(
            s,
            tenant_id=setup.tenant_id,
            kind=CrmKind.HUBSPOT,
            name="second portal",
            credentials=kind.credentials,
            field_mapping=kind.mapping,
            base_url=None,
            secret_key=TEST_SECRET,
        )
        await crm_repo.save_link(
            s,
            tenant_id=setup.tenant_id,
            integration_id=second.id,
            lead_id=setup.lead_id,
            remote_id=REMOTE,
        )
    await _set_enabled(harness, setup, False)
    handle = await start_conversation(harness, setup.tenant_id, setup.conversation_id)
    try:
        response = await _post(harness, kind.events(setup.tenant_id)[0])
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["leads_updated"] == [setup.lead_id] and answer["ignored_reasons"] == []
        lead, links = await _rows(harness, setup)
        assert lead["do_not_contact"] is True
        remote = {link["integration_id"]: link["remote_id"] for link in links}
        assert remote == {setup.integration_id: REMOTE, second.id: None}
    finally:
        await handle.terminate()
