"""Integrations and leads API: validation, credentials never returned, tenant isolation,
connection tests and manual syncs through a real CRM worker on the dev server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from activities.crm.activities import CrmActivities
from activities.crm.plugin import crm_plugin
from api.app import create_app
from models import task_queues
from models.db import Database
from models.repo import leads as lead_repo
from models.settings import Settings
from tests.conftest import make_tenant
from tests.fakes.crm import HubSpotFake
from workflows.crm_sync import CrmConnectionTestWorkflow, CrmSyncWorkflow

pytestmark = pytest.mark.timeout(120)


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


async def crm_worker(
    client: Client, db: Database, settings: Settings, http: httpx.AsyncClient
) -> Worker:
    acts = CrmActivities(settings=settings, db=db, http=http, adapters=crm_plugin().crm_adapters)
    return Worker(
        client,
        task_queue=task_queues.CRM,
        workflows=[CrmSyncWorkflow, CrmConnectionTestWorkflow],
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


async def test_add_list_validate_and_never_return_credentials(
    api: tuple[httpx.AsyncClient, Settings], sqlite_db: Database
) -> None:
    http, _ = api
    _, key = await make_tenant(sqlite_db)
    other_tid, other_key = await make_tenant(sqlite_db)

    bad = await http.post(
        "/api/v1/integrations",
        headers=auth(key),
        json={
            "kind": "hubspot",
            "name": "hs",
            "credentials": {"access_token": "pat-very-secret"},
            "field_mapping": {"email": "email", "shoe_size": "shoe", "score": "Not Valid"},
        },
    )
    assert bad.status_code == 422
    assert bad.json()["error"] == "invalid integration"
    fields = {p["field"] for p in bad.json()["detail"]}
    assert fields == {"shoe_size", "score"}
    assert "pat-very-secret" not in bad.text

    missing = await http.post(
        "/api/v1/integrations",
        headers=auth(key),
        json={"kind": "salesforce", "name": "sf", "credentials": {"client_id": "x"}},
    )
    assert missing.status_code == 422
    assert missing.json()["detail"] == [
        {"field": "credentials.client_secret", "problem": "required"}
    ]

    # A base URL the connection guard would refuse is refused when added, with its reason
    # (the metadata address; loopback is allowlisted in the tests, private ranges are not).
    for url, reason in (
        ("http://169.254.169.254/", "cloud metadata"),
        ("http://192.168.1.20:8080", "private"),
    ):
        refused = await http.post(
            "/api/v1/integrations",
            headers=auth(key),
            json={
                "kind": "hubspot",
                "name": "hs",
                "base_url": url,
                "credentials": {"access_token": "pat-very-secret"},
            },
        )
        assert refused.status_code == 422, refused.text
        (problem,) = refused.json()["detail"]
        assert problem["field"] == "base_url" and reason in problem["problem"], problem

    created = await http.post(
        "/api/v1/integrations",
        headers=auth(key),
        json={
            "kind": "hubspot",
            "name": "hs",
            "credentials": {"access_token": "pat-very-secret", "client_secret": "app-secret"},
            "field_mapping": {"email": "email", "do_not_contact": "leadflow_dnc"},
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["base_url"] == "https://api.hubapi.com"
    assert body["credentials_set"] == ["access_token", "client_secret"]
    assert "pat-very-secret" not in created.text and "app-secret" not in created.text

    dup = await http.post(
        "/api/v1/integrations",
        headers=auth(key),
        json={"kind": "hubspot", "name": "hs", "credentials": {"access_token": "x"}},
    )
    assert dup.status_code == 409

    listed = await http.get("/api/v1/integrations", headers=auth(key))
    assert [i["name"] for i in listed.json()] == ["hs"]
    assert "pat-very-secret" not in listed.text
    assert (await http.get("/api/v1/integrations", headers=auth(other_key))).json() == []
    foreign = await http.post(f"/api/v1/integrations/{body['id']}/test", headers=auth(other_key))
    assert foreign.status_code == 404
    assert (await http.get("/api/v1/integrations")).status_code == 401
    assert other_tid


async def test_connection_test_and_manual_sync_through_a_crm_worker(
    api: tuple[httpx.AsyncClient, Settings], sqlite_db: Database, temporal_client: Client
) -> None:
    http, settings = api
    tid, key = await make_tenant(sqlite_db)
    _, other_key = await make_tenant(sqlite_db)
    with HubSpotFake(token="pat") as hs:
        good = await http.post(
            "/api/v1/integrations",
            headers=auth(key),
            json={
                "kind": "hubspot",
                "name": "hs",
                "base_url": hs.url,
                "credentials": {"access_token": "pat"},
            },
        )
        wrong = await http.post(
            "/api/v1/integrations",
            headers=auth(key),
            json={
                "kind": "hubspot",
                "name": "hs-wrong",
                "base_url": hs.url,
                "credentials": {"access_token": "nope"},
            },
        )
        async with sqlite_db.session() as s:
            lead = await lead_repo.create_lead(
                s,
                tenant_id=tid,
                channel="waha",
                address="1@c.us",
                name="Kim Lee",
                email="kim@example.com",
                score=61,
            )
        async with httpx.AsyncClient() as crm_http:
            worker = await crm_worker(temporal_client, sqlite_db, settings, crm_http)
            async with worker:
                ok = await http.post(
                    f"/api/v1/integrations/{good.json()['id']}/test", headers=auth(key)
                )
                assert ok.json()["ok"] is True, ok.text
                ko = await http.post(
                    f"/api/v1/integrations/{wrong.json()['id']}/test", headers=auth(key)
                )
                assert ko.json()["ok"] is False
                assert "HTTP 401" in ko.json()["detail"]

                assert (
                    await http.post(f"/api/v1/leads/{lead.id}/sync", headers=auth(other_key))
                ).status_code == 404
                accepted = await http.post(f"/api/v1/leads/{lead.id}/sync", headers=auth(key))
                assert accepted.status_code == 202
                handle = temporal_client.get_workflow_handle(accepted.json()["workflow_id"])
                result: Any = await handle.result()
                # saga: the second connection's token is refused, so the first is undone
                assert result["status"] == "rolled_back"

        detail = await http.get(f"/api/v1/leads/{lead.id}", headers=auth(key))
        assert detail.status_code == 200
        crm = {c["name"]: c for c in detail.json()["crm"]}
        assert crm["hs"]["outcome"] == "compensated"
        assert crm["hs"]["remote_id"] is None  # the created contact was deleted again
        assert crm["hs-wrong"]["outcome"] == "failed"
        assert "CrmAuthFailed" in crm["hs-wrong"]["reason"]
        assert hs.contacts == {}
        assert detail.json()["recent_syncs"][0]["status"] == "rolled_back"
        assert (
            await http.get(f"/api/v1/leads/{lead.id}", headers=auth(other_key))
        ).status_code == 404
