"""A GoHighLevel connection through the API: its credentials (token and location) required
and never returned, its default mapping, and the connection test through a real CRM worker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from temporalio.client import Client

from api.app import create_app
from models.crm import DEFAULT_FIELD_MAPPINGS, CrmKind
from models.db import Database
from models.settings import Settings
from tests.api.test_integrations import auth, crm_worker
from tests.conftest import make_tenant
from tests.fakes.gohighlevel import GoHighLevelFake

pytestmark = pytest.mark.timeout(120)

LOCATION = "ve9EPM428h8vShlRW1KT"


@pytest.fixture
async def ghl_api(
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


async def test_gohighlevel_connection_added_and_tested(
    ghl_api: tuple[httpx.AsyncClient, Settings], sqlite_db: Database, temporal_client: Client
) -> None:
    http, settings = ghl_api
    _, key = await make_tenant(sqlite_db)
    missing = await http.post(
        "/api/v1/integrations",
        headers=auth(key),
        json={
            "kind": "gohighlevel",
            "name": "ghl",
            "credentials": {"private_integration_token": "pit-very-secret"},
            "field_mapping": {"email": "email", "score": "leadflow_score"},
        },
    )
    assert missing.status_code == 422
    problems = {p["field"]: p["problem"] for p in missing.json()["detail"]}
    assert problems["credentials.location_id"] == "required"
    assert "not a valid gohighlevel property" in problems["score"] and len(problems) == 2
    assert "pit-very-secret" not in missing.text

    default = await http.post(
        "/api/v1/integrations",
        headers=auth(key),
        json={
            "kind": "gohighlevel",
            "name": "ghl-default",
            "credentials": {"private_integration_token": "pit-very-secret", "location_id": "x"},
        },
    )
    assert default.status_code == 201, default.text
    assert default.json()["base_url"] == "https://services.leadconnectorhq.com"
    assert default.json()["field_mapping"] == DEFAULT_FIELD_MAPPINGS[CrmKind.GOHIGHLEVEL]

    with GoHighLevelFake(token="pit-very-secret", location_id=LOCATION) as ghl:
        created = await http.post(
            "/api/v1/integrations",
            headers=auth(key),
            json={
                "kind": "gohighlevel",
                "name": "ghl",
                "base_url": ghl.url,
                "credentials": {
                    "private_integration_token": "pit-very-secret",
                    "location_id": LOCATION,
                },
                "field_mapping": {"email": "email", "score": "customField.3sv6UEo51C9Bmpo1cKTq"},
            },
        )
        assert created.status_code == 201, created.text
        assert created.json()["credentials_set"] == ["location_id", "private_integration_token"]
        assert "pit-very-secret" not in created.text
        async with httpx.AsyncClient() as crm_http:
            worker = await crm_worker(temporal_client, sqlite_db, settings, crm_http)
            async with worker:
                tested = await http.post(
                    f"/api/v1/integrations/{created.json()['id']}/test", headers=auth(key)
                )
        assert tested.status_code == 200, tested.text
        assert tested.json()["ok"] is True and LOCATION in tested.json()["detail"]
        assert len(ghl.calls("GET", f"^/locations/{LOCATION}/customFields$")) == 1
