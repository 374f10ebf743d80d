"""`GET /api/v1/leads`: filters, keyset pages (none repeated or missing, also with equal
creation times and a lead added mid-way), tenant isolation and bad parameters, on SQLite and
PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from api.app import create_app
from models.db import Database
from models.settings import Settings
from models.tables import Conversation, Lead
from tests.conftest import make_tenant

pytestmark = pytest.mark.timeout(120)

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@pytest.fixture
async def api(
    db: Database,
    database_url: str,
    settings_factory: Callable[..., Settings],
    temporal_client: Client,
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_factory(database_url))
    async with app.router.lifespan_context(app):
        app.state.leadflow.temporal = temporal_client
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://leadflow.test") as http:
            yield http


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def add_lead(db: Database, tenant_id: str, n: int, **values: Any) -> str:
    lead_id = str(values.pop("id", f"{tenant_id}-lead-{n:03d}"))
    lead = Lead(
        id=lead_id,
        tenant_id=tenant_id,
        channel="email",
        address=f"{lead_id}@example.com",
        created_at=values.pop("created_at", T0 + timedelta(minutes=n)),
        **values,
    )
    async with db.session() as session:
        session.add(lead)
        await session.commit()
    return lead_id


async def ids(http: httpx.AsyncClient, key: str, **params: Any) -> list[str]:
    response = await http.get("/api/v1/leads", params=params, headers=auth(key))
    assert response.status_code == 200, response.text
    return [lead["id"] for lead in response.json()["leads"]]


async def test_filters(api: httpx.AsyncClient, db: Database) -> None:
    tenant, key = await make_tenant(db)
    hot = await add_lead(
        db,
        tenant,
        1,
        name="Ana Lima",
        email="ana@autohaus-lima.de",
        phone="+4915112345678",
        quality="HOT",
        fields={"company": "Autohaus Lima GmbH"},
        source_job_id="job-a",
    )
    cold = await add_lead(db, tenant, 2, name="Bo Chen", email="bo@chen.example", quality="COLD")
    dnc = await add_lead(
        db, tenant, 3, name="Cy 100%_Off", phone="+4915112345679", do_not_contact=True
    )
    blank = await add_lead(db, tenant, 4, name=None, email="", quality="WARM")

    assert await ids(api, key) == [blank, dnc, cold, hot]  # newest first
    assert await ids(api, key, quality="HOT") == [hot]
    assert await ids(api, key, quality="WARM") == [blank]
    assert await ids(api, key, source_job="job-a") == [hot]
    assert await ids(api, key, source_job="job-b") == []
    assert await ids(api, key, has_email="true") == [cold, hot]  # "" is no e-mail
    assert await ids(api, key, has_email="false") == [blank, dnc]
    assert await ids(api, key, has_phone="true") == [dnc, hot]
    assert await ids(api, key, has_phone="false") == [blank, cold]
    assert await ids(api, key, do_not_contact="true") == [dnc]
    assert await ids(api, key, do_not_contact="false") == [blank, cold, hot]
    assert await ids(api, key, q="lima gmbh") == [hot]  # company, case-insensitive
    assert await ids(api, key, q="CHEN.EXAMPLE") == [cold]  # e-mail
    assert await ids(api, key, q="bo ch") == [cold]  # name
    # LIKE's wildcards are taken literally
    assert await ids(api, key, q="100%_") == [dnc]
    assert await ids(api, key, q="%") == [dnc]
    assert await ids(api, key, q="_") == [dnc]
    assert await ids(api, key, quality="HOT", has_phone="false") == []
    assert await ids(api, key, has_email="true", q="lima") == [hot]

    # The status: leads with a conversation in that stage (another tenant's never counts).
    other, _ = await make_tenant(db)
    async with db.session() as session:
        for n, (tenant_id, lead_id, stage) in enumerate(
            [
                (tenant, hot, "scheduling"),
                (tenant, hot, "closed"),
                (tenant, cold, "qualifying"),
                (other, cold, "scheduling"),
            ]
        ):
            session.add(
                Conversation(
                    id=f"conv:{tenant_id}:email:{n}",
                    tenant_id=tenant_id,
                    channel="email",
                    contact=f"{n}@example.com",
                    lead_id=lead_id,
                    stage=stage,
                )
            )
        await session.commit()
    assert await ids(api, key, stage="scheduling") == [hot]
    assert await ids(api, key, stage="closed") == [hot]
    assert await ids(api, key, stage="qualifying") == [cold]
    assert await ids(api, key, stage="human_handoff") == []
    assert await ids(api, key, stage="scheduling", quality="COLD") == []

    page = (await api.get("/api/v1/leads", params={"q": "ana"}, headers=auth(key))).json()
    (summary,) = page["leads"]
    assert summary["company"] == "Autohaus Lima GmbH"
    assert summary["email"] == "ana@autohaus-lima.de"
    assert summary["phone"] == "+4915112345678"
    assert summary["source_job_id"] == "job-a"
    assert page["next_cursor"] is None and page["next"] is None
    # the same values as the lead's own page
    detail = (await api.get(f"/api/v1/leads/{hot}", headers=auth(key))).json()
    for field in ("name", "email", "phone", "quality", "score", "do_not_contact", "address"):
        assert summary[field] == detail[field]


async def test_pages_cover_every_lead_once(api: httpx.AsyncClient, db: Database) -> None:
    tenant, key = await make_tenant(db)
    made = []
    for n in range(23):
        # groups of three share a creation time: the id breaks the tie
        made.append(await add_lead(db, tenant, n, created_at=T0 + timedelta(minutes=n // 3)))
    seen: list[str] = []
    url: str | None = "/api/v1/leads?limit=5"
    pages = 0
    while url is not None:
        response = await api.get(url, headers=auth(key))
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["leads"]) <= 5
        seen.extend(lead["id"] for lead in body["leads"])
        if pages == 1:
            # a lead created while paging sorts first: it neither shifts nor repeats the rest
            await add_lead(db, tenant, 99, created_at=T0 + timedelta(days=1))
        url = body["next"]
        if url is not None:
            assert body["next_cursor"] in url
        pages += 1
    assert pages == 5
    assert len(seen) == len(set(seen)) == 23
    assert set(seen) == set(made)
    # newest first, and among equal creation times the greater id first
    assert seen == sorted(made, key=lambda i: (int(i.rsplit("-", 1)[1]) // 3, i), reverse=True)

    # the next link keeps the filters
    first = (
        await api.get("/api/v1/leads", params={"limit": 2, "quality": "COLD"}, headers=auth(key))
    ).json()
    assert "quality=COLD" in first["next"]


async def test_tenants_are_isolated(api: httpx.AsyncClient, db: Database) -> None:
    tenant_a, key_a = await make_tenant(db)
    tenant_b, key_b = await make_tenant(db)
    a = await add_lead(db, tenant_a, 1, name="Same Name", quality="HOT")
    b = await add_lead(db, tenant_b, 1, name="Same Name", quality="HOT")
    assert await ids(api, key_a) == [a]
    assert await ids(api, key_b, q="same", quality="HOT") == [b]
    # another tenant's lead as a cursor reads as missing, as its id does everywhere
    response = await api.get("/api/v1/leads", params={"cursor": b}, headers=auth(key_a))
    assert response.status_code == 404
    assert response.json()["error"] == "unknown cursor"
    assert (await api.get("/api/v1/leads")).status_code == 401


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "201"},
        {"limit": "ten"},
        {"quality": "BOILING"},
        {"has_email": "perhaps"},
        {"do_not_contact": "2"},
        {"q": ""},
        {"q": "x" * 201},
        {"source_job": ""},
        {"stage": "nowhere"},
        {"cursor": "!!!not-an-id"},
        {"cursor": "x" * 65},
    ],
)
async def test_bad_params_are_422(
    api: httpx.AsyncClient, db: Database, params: dict[str, str]
) -> None:
    tenant, key = await make_tenant(db)
    await add_lead(db, tenant, 1)
    response = await api.get("/api/v1/leads", params=params, headers=auth(key))
    assert response.status_code == 422, response.text
    assert "error" in response.json()


async def test_cursor_of_an_erased_lead_is_404(api: httpx.AsyncClient, db: Database) -> None:
    tenant, key = await make_tenant(db)
    for n in range(3):
        await add_lead(db, tenant, n)
    page = (await api.get("/api/v1/leads?limit=2", headers=auth(key))).json()
    async with db.session() as session:
        lead = await session.get(Lead, page["next_cursor"])
        await session.delete(lead)
        await session.commit()
    response = await api.get(page["next"], headers=auth(key))
    assert response.status_code == 404, response.text
