"""A CRM whose base_url points inside the network: refused when added (422 with the reason), and
"test connection" of one stored before that rule is a 4xx with the reason too, never a probe
(whose "refused" versus "HTTP 404" would map internal ports for the tenant)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from temporalio.client import Client

from api.app import create_app
from models.crm import CrmKind
from models.db import Database
from models.repo import crm as crm_repo
from models.settings import Settings
from tests.conftest import TEST_SECRET, make_tenant

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def api(
    sqlite_db: Database,
    sqlite_url: str,
    settings_factory: Callable[..., Settings],
    temporal_client: Client,
) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_factory(sqlite_url, ssrf_allowlist=[])
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        app.state.leadflow.temporal = temporal_client
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://leadflow.test") as http:
            yield http


@pytest.mark.parametrize(
    ("base_url", "reason"),
    [
        ("http://127.0.0.1:6379", "127.0.0.1 is a loopback address"),
        ("http://169.254.169.254", "169.254.169.254 is a cloud metadata address"),
        ("http://[::ffff:10.0.0.5]:8080", "private (IPv4 10.0.0.5 inside IPv6)"),
        ("http://localhost:5432", "localhost is a local name"),
    ],
)
async def test_testing_a_crm_on_an_internal_address_is_a_422_with_the_reason(
    api: httpx.AsyncClient, sqlite_db: Database, base_url: str, reason: str
) -> None:
    tid, key = await make_tenant(sqlite_db)
    headers = {"Authorization": f"Bearer {key}"}
    refused = await api.post(
        "/api/v1/integrations",
        headers=headers,
        json={
            "kind": "hubspot",
            "name": "probe",
            "base_url": base_url,
            "credentials": {"access_token": "pat"},
        },
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"] == "invalid integration"
    (problem,) = refused.json()["detail"]
    assert problem["field"] == "base_url" and reason in problem["problem"], problem
    listed = await api.get("/api/v1/integrations", headers=headers)
    assert listed.json() == []
    # One stored before the rule (or written past the API): testing it probes nothing either.
    async with sqlite_db.session() as session:
        stored = await crm_repo.create_integration(
            session,
            tenant_id=tid,
            kind=CrmKind.HUBSPOT,
            name="probe",
            base_url=base_url,
            credentials={"access_token": "pat"},
            secret_key=TEST_SECRET,
        )
    # No CRM worker runs in this test: an answer at all shows nothing was started or probed.
    tested = await api.post(f"/api/v1/integrations/{stored.id}/test", headers=headers)
    assert tested.status_code == 422, tested.text
    body = tested.json()
    assert body["error"] == "integration base_url refused"
    assert reason in body["detail"]
