"""Reading, editing, disabling and deleting CRM connections (issue 14's settings page):
validation like an addition, credentials write-only, a disabled connection left out of the
next sync (a real CRM worker on the dev server against the HubSpot fake), a deleted one gone
with its links, and no link recreated for it by a sync that was under way."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlmodel import select
from temporalio.client import Client

from models.crm import CrmKind, SagaStepOutcome, StepStatus, SyncOutcome, SyncStatus
from models.crm_tables import CrmLink, Integration
from models.db import Database
from models.repo import crm as crm_repo
from models.repo import leads as lead_repo
from models.settings import Settings
from tests.api.test_integrations import api, auth, crm_worker
from tests.conftest import make_tenant
from tests.fakes.crm import HubSpotFake

__all__ = ["api"]  # the fixture, shared with tests/api/test_integrations.py

pytestmark = pytest.mark.timeout(180)

Api = tuple[httpx.AsyncClient, Settings]


async def _add(http: httpx.AsyncClient, key: str, **body: Any) -> dict[str, Any]:
    response = await http.post("/api/v1/integrations", headers=auth(key), json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_get_and_patch_validate_like_add_and_never_return_credentials(
    api: Api, sqlite_db: Database
) -> None:
    http, _ = api
    _, key = await make_tenant(sqlite_db)
    _, other_key = await make_tenant(sqlite_db)
    hs = await _add(
        http, key, kind="hubspot", name="hs", credentials={"access_token": "pat-very-secret"}
    )
    await _add(http, key, kind="pipedrive", name="pd", credentials={"api_token": "pd-secret"})
    url = f"/api/v1/integrations/{hs['id']}"

    got = await http.get(url, headers=auth(key))
    assert got.status_code == 200, got.text
    assert got.json()["credentials_set"] == ["access_token"]
    assert got.json()["enabled"] is True
    assert "pat-very-secret" not in got.text

    changed = await http.patch(
        url,
        headers=auth(key),
        json={
            "name": "HubSpot EU",
            "base_url": "http://127.0.0.1:9/hub/",
            "field_mapping": {"email": "email", "score": "lead_points"},
            "enabled": False,
            "credentials": {"access_token": "pat-new-secret", "client_secret": "cs-secret"},
        },
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["name"] == "HubSpot EU"
    assert body["base_url"] == "http://127.0.0.1:9/hub"
    assert body["field_mapping"] == {"email": "email", "score": "lead_points"}
    assert body["enabled"] is False
    assert body["credentials_set"] == ["access_token", "client_secret"]
    assert "secret" not in changed.text.replace("client_secret", "")

    # one credential removed, the other kept; base_url null goes back to the vendor's
    again = await http.patch(
        url, headers=auth(key), json={"credentials": {"client_secret": None}, "base_url": None}
    )
    assert again.status_code == 200, again.text
    assert again.json()["credentials_set"] == ["access_token"]
    assert again.json()["base_url"] == "https://api.hubapi.com"
    assert again.json()["name"] == "HubSpot EU"  # untouched keys keep their values

    async def refused(patch: dict[str, Any], status: int = 422) -> dict[str, Any]:
        response = await http.patch(url, headers=auth(key), json=patch)
        assert response.status_code == status, (patch, response.text)
        assert "pat-new-secret" not in response.text
        answer: dict[str, Any] = response.json()
        return answer

    bad_mapping = await refused({"field_mapping": {"shoe_size": "shoe", "score": "Not Valid"}})
    assert {p["field"] for p in bad_mapping["detail"]} == {"shoe_size", "score"}
    no_token = await refused({"credentials": {"access_token": None}})
    assert no_token["detail"] == [{"field": "credentials.access_token", "problem": "required"}]
    metadata = await refused({"base_url": "http://169.254.169.254/"})
    assert metadata["detail"][0]["field"] == "base_url"
    assert "cloud metadata" in metadata["detail"][0]["problem"]
    await refused({"base_url": "ftp://example.com"})
    await refused({"name": None})
    await refused({"name": ""})
    await refused({"enabled": "sometimes"})
    await refused({"credentials": {"access_token": 1.5}})
    await refused({"kind": "salesforce"})  # the kind of a connection is not editable
    taken = await refused({"name": "pd"}, status=409)
    assert taken["error"] == "integration exists"
    # nothing of the refused edits was stored
    kept = (await http.get(url, headers=auth(key))).json()
    assert kept["name"] == "HubSpot EU" and kept["credentials_set"] == ["access_token"]
    assert kept["base_url"] == "https://api.hubapi.com"

    # another tenant's id is unknown, whatever the verb
    assert (await http.get(url, headers=auth(other_key))).status_code == 404
    assert (
        await http.patch(url, headers=auth(other_key), json={"enabled": True})
    ).status_code == 404
    assert (await http.delete(url, headers=auth(other_key))).status_code == 404
    assert (await http.get(url, headers=auth(key))).json()["enabled"] is False
    assert (await http.get("/api/v1/integrations/nope", headers=auth(key))).status_code == 404
    assert (await http.delete(url)).status_code == 401


async def test_disabled_is_left_out_of_the_sync_and_delete_removes_links(
    api: Api, sqlite_db: Database, temporal_client: Client
) -> None:
    http, settings = api
    tid, key = await make_tenant(sqlite_db)
    with HubSpotFake(token="pat") as hs:
        good = await _add(
            http,
            key,
            kind="hubspot",
            name="hs",
            base_url=hs.url,
            credentials={"access_token": "pat"},
        )
        # its token is refused: enabled, it fails every saga (test_integrations.py shows that)
        wrong = await _add(
            http,
            key,
            kind="hubspot",
            name="hs-wrong",
            base_url=hs.url,
            credentials={"access_token": "nope"},
        )
        disabled = await http.patch(
            f"/api/v1/integrations/{wrong['id']}", headers=auth(key), json={"enabled": False}
        )
        assert disabled.status_code == 200 and disabled.json()["enabled"] is False
        async with sqlite_db.session() as s:
            lead = await lead_repo.create_lead(
                s,
                tenant_id=tid,
                channel="waha",
                address="2@c.us",
                name="Kim Lee",
                email="kim@example.com",
                score=61,
            )
        async with httpx.AsyncClient() as crm_http:
            async with await crm_worker(temporal_client, sqlite_db, settings, crm_http):
                accepted = await http.post(f"/api/v1/leads/{lead.id}/sync", headers=auth(key))
                assert accepted.status_code == 202, accepted.text
                handle = temporal_client.get_workflow_handle(accepted.json()["workflow_id"])
                result: Any = await handle.result()
        assert result["status"] == "succeeded", result
        assert [step["name"] for step in result["steps"]] == ["hs"]
        assert [c["properties"]["email"] for c in hs.contacts.values()] == ["kim@example.com"]

        detail = (await http.get(f"/api/v1/leads/{lead.id}", headers=auth(key))).json()
        assert [c["name"] for c in detail["crm"]] == ["hs"]

        deleted = await http.delete(f"/api/v1/integrations/{good['id']}", headers=auth(key))
        assert deleted.status_code == 204 and deleted.content == b""
        again = await http.delete(f"/api/v1/integrations/{good['id']}", headers=auth(key))
        assert again.status_code == 404
        assert (
            await http.get(f"/api/v1/integrations/{good['id']}", headers=auth(key))
        ).status_code == 404
        listed = (await http.get("/api/v1/integrations", headers=auth(key))).json()
        assert [i["name"] for i in listed] == ["hs-wrong"]
        async with sqlite_db.session() as s:
            links = (
                await s.exec(select(CrmLink).where(CrmLink.integration_id == good["id"]))
            ).all()
        assert links == []
        # the CRM's own record is not touched by removing the connection
        assert len(hs.contacts) == 1
        detail = (await http.get(f"/api/v1/leads/{lead.id}", headers=auth(key))).json()
        assert detail["crm"] == []
        assert detail["recent_syncs"][0]["status"] == "succeeded"  # history stays


async def test_a_sync_that_ends_after_the_delete_recreates_no_link(db: Database) -> None:
    """On SQLite and PostgreSQL."""
    tid, _ = await make_tenant(db)
    async with db.session() as s:
        lead = await lead_repo.create_lead(s, tenant_id=tid, channel="waha", address="3@c.us")
        kept = await crm_repo.create_integration(
            s,
            tenant_id=tid,
            kind=CrmKind.HUBSPOT,
            name="kept",
            credentials={"access_token": "a"},
            secret_key="k" * 32,
        )
        gone = await crm_repo.create_integration(
            s,
            tenant_id=tid,
            kind=CrmKind.HUBSPOT,
            name="gone",
            credentials={"access_token": "b"},
            secret_key="k" * 32,
        )
        kept_id, gone_id = kept.id, gone.id
        await crm_repo.save_link(
            s, tenant_id=tid, integration_id=gone_id, lead_id=lead.id, remote_id="9"
        )
        assert await crm_repo.delete_integration(s, tenant_id=tid, integration_id=gone_id)
        assert await s.get(Integration, gone_id) is None

        def step(integration_id: str, name: str) -> SagaStepOutcome:
            return SagaStepOutcome(
                integration_id=integration_id,
                kind=CrmKind.HUBSPOT,
                name=name,
                status=StepStatus.SUCCEEDED,
                remote_id="77",
            )

        outcome = SyncOutcome(
            tenant_id=tid,
            lead_id=lead.id,
            version=1,
            status=SyncStatus.SUCCEEDED,
            steps=(step(kept_id, "kept"), step(gone_id, "gone")),
        )
        assert await crm_repo.record_sync_run(s, run_key="run-1:1", outcome=outcome)
        links = await crm_repo.links_of_lead(s, tenant_id=tid, lead_id=lead.id)
    assert [(link.integration_id, link.remote_id) for link in links] == [(kept_id, "77")]
