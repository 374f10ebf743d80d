"""`GET /api/v1/leads/export` (the list's filters as CSV, formulas neutralised, every page) and
`GET /api/v1/leads/{id}/history` (score changes, conversations and stages, handoffs, operators'
decisions, the audit log's who, CRM syncs), with bad input and another tenant's ids; on SQLite
and PostgreSQL."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from temporalio.client import Client

from api.app import create_app
from models.crm import CrmKind, SagaStepOutcome, StepStatus, SyncOutcome, SyncStatus
from models.db import Database
from models.repo import crm as crm_repo
from models.settings import Settings
from models.tables import Conversation, Escalation, Lead, LeadScoreRecord
from tests.conftest import make_tenant

pytestmark = pytest.mark.timeout(180)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
async def http(
    db: Database,
    database_url: str,
    settings_factory: Callable[..., Settings],
    temporal_client: Client,
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_factory(database_url))
    async with app.router.lifespan_context(app):
        app.state.leadflow.temporal = temporal_client
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://leadflow.test") as c:
            yield c


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


async def test_export_follows_the_list_filters_and_neutralises_formulas(
    http: httpx.AsyncClient, db: Database
) -> None:
    tenant, key = await make_tenant(db)
    other, other_key = await make_tenant(db)
    leads = [
        Lead(
            id=f"{tenant}-{n:03d}",
            tenant_id=tenant,
            channel="email",
            address=f"l{n}@example.com",
            email=f"l{n}@example.com",
            quality="COLD",
            created_at=T0 + timedelta(minutes=n),
        )
        for n in range(210)  # more than one page of the list (MAX_PAGE 200)
    ]
    leads.append(
        Lead(
            id=f"{tenant}-hot",
            tenant_id=tenant,
            channel="waha",
            address="4915112345678@c.us",
            name='=HYPERLINK("http://evil.example","click")',
            phone="+4915112345678",
            quality="HOT",
            fields={"company": "@SUM(1+1)"},
            tags=["vip", "test-drive"],
            created_at=T0 + timedelta(days=1),
        )
    )
    leads.append(Lead(id=f"{other}-x", tenant_id=other, channel="email", address="x@example.com"))
    async with db.session() as session:
        session.add_all(leads)
        await session.commit()

    everything = await http.get("/api/v1/leads/export", headers=auth(key))
    assert everything.status_code == 200, everything.text
    assert everything.headers["content-type"].startswith("text/csv")
    assert "attachment" in everything.headers["content-disposition"]
    rows = _rows(everything.text)
    assert len(rows) == 211
    assert len({r["id"] for r in rows}) == 211  # no lead twice across pages
    assert rows[0]["id"] == f"{tenant}-hot"  # newest first, as the list
    hot = rows[0]
    assert hot["name"].startswith("'=HYPERLINK")  # neutralised, as enrichment results are
    assert hot["company"] == "'@SUM(1+1)"
    assert hot["phone"] == "+4915112345678"  # a phone number is left alone
    assert hot["tags"] == "vip;test-drive" and hot["quality"] == "HOT"
    assert all(not r["id"].startswith(other) for r in rows)

    only_hot = await http.get(
        "/api/v1/leads/export", params={"quality": "HOT", "tag": "vip"}, headers=auth(key)
    )
    assert [r["id"] for r in _rows(only_hot.text)] == [f"{tenant}-hot"]
    searched = await http.get("/api/v1/leads/export", params={"q": "l7@example"}, headers=auth(key))
    assert [r["email"] for r in _rows(searched.text)] == ["l7@example.com"]
    none = await http.get("/api/v1/leads/export", params={"tag": "nobody"}, headers=auth(key))
    assert none.status_code == 200 and _rows(none.text) == []
    assert none.text.startswith("id,name,company")  # the header row is always there
    theirs = await http.get("/api/v1/leads/export", headers=auth(other_key))
    assert [r["id"] for r in _rows(theirs.text)] == [f"{other}-x"]

    for params in (
        {"quality": "LAVA"},
        {"tag": "Not A Tag"},
        {"has_email": "perhaps"},
        {"q": ""},
        {"stage": "dreaming"},
    ):
        bad = await http.get("/api/v1/leads/export", params=params, headers=auth(key))
        assert bad.status_code == 422, (params, bad.text)
    assert (await http.get("/api/v1/leads/export")).status_code == 401


async def test_history_says_what_changed_when_and_who(
    http: httpx.AsyncClient, db: Database
) -> None:
    tenant, key = await make_tenant(db)
    _, other_key = await make_tenant(db)
    lead_id = f"{tenant}-lead"
    conv_id = f"conv:{tenant}:waha:31611111111@c.us"
    async with db.session() as session:
        session.add(
            Lead(
                id=lead_id,
                tenant_id=tenant,
                channel="waha",
                address="31611111111@c.us",
                name="Kim",
                tags=["vip"],
                created_at=T0,
            )
        )
        await session.commit()
        session.add(
            Conversation(
                id=conv_id,
                tenant_id=tenant,
                channel="waha",
                contact="31611111111@c.us",
                lead_id=lead_id,
                stage="human_handoff",
                turns=3,
                created_at=T0 + timedelta(minutes=1),
                updated_at=T0 + timedelta(minutes=9),
            )
        )
        await session.commit()
        for minute, total, quality in ((2, 20, "COLD"), (4, 20, "COLD"), (6, 80, "HOT")):
            session.add(
                LeadScoreRecord(
                    tenant_id=tenant,
                    lead_id=lead_id,
                    conversation_id=conv_id,
                    dedupe_key=f"turn-{minute}",
                    total=total,
                    quality=quality,
                    components=[{"name": "budget", "points": total}],
                    at=T0 + timedelta(minutes=minute),
                )
            )
        session.add(
            Escalation(
                tenant_id=tenant,
                conversation_id=conv_id,
                dedupe_key="esc-1",
                rule="complaint",
                reason="the lead complained",
                notified=["manager"],
                created_at=T0 + timedelta(minutes=8),
                resolved_at=T0 + timedelta(minutes=30),
            )
        )
        await session.commit()
        hubspot = await crm_repo.create_integration(
            session,
            tenant_id=tenant,
            kind=CrmKind.HUBSPOT,
            name="hs",
            credentials={"access_token": "x"},
            secret_key="k" * 32,
        )
        await crm_repo.record_sync_run(
            session,
            run_key="r:1",
            outcome=SyncOutcome(
                tenant_id=tenant,
                lead_id=lead_id,
                version=2,
                status=SyncStatus.SUCCEEDED,
                steps=(
                    SagaStepOutcome(
                        integration_id=hubspot.id,
                        kind=CrmKind.HUBSPOT,
                        name="hs",
                        status=StepStatus.SUCCEEDED,
                        remote_id="501",
                    ),
                ),
            ),
        )

    # two operators' actions through the API: the audit log records who
    edited = await http.patch(
        f"/api/v1/leads/{lead_id}", headers=auth(key), json={"name": "Kim Lee"}
    )
    assert edited.status_code == 200, edited.text
    dnc = await http.post(
        f"/api/v1/leads/{lead_id}/do-not-contact",
        headers=auth(key),
        json={"do_not_contact": True, "reason": "asked by phone", "by": "Mila"},
    )
    assert dnc.status_code == 200, dnc.text

    response = await http.get(f"/api/v1/leads/{lead_id}/history", headers=auth(key))
    assert response.status_code == 200, response.text
    history = response.json()
    assert history["lead_id"] == lead_id and history["complete"] is True
    assert history["tags"] == ["vip"] and history["do_not_contact"] is True
    entries = history["entries"]
    ats = [e["at"] for e in entries]
    assert ats == sorted(ats, reverse=True)  # newest first
    kinds = [e["kind"] for e in entries]
    assert kinds[-1] == "created"

    scores = [e for e in entries if e["kind"] == "score"]
    # the unchanged second record is no change
    assert [s["summary"] for s in scores] == ["score 80 (HOT), was 20 (COLD)", "score 20 (COLD)"]
    assert scores[0]["detail"]["components"] == [{"name": "budget", "points": 80}]
    (stage,) = [e for e in entries if e["kind"] == "stage"]
    assert stage["detail"]["stage"] == "human_handoff" and stage["conversation_id"] == conv_id
    (handoff,) = [e for e in entries if e["kind"] == "handoff"]
    assert "complaint" in handoff["summary"] and handoff["detail"]["notified"] == ["manager"]
    assert [e["kind"] for e in entries].count("released") == 1
    (note,) = [e for e in entries if e["kind"] == "note"]
    assert note["summary"] == "Do-not-contact set by Mila: asked by phone"
    actions = {e["detail"]["action"]: e for e in entries if e["kind"] == "action"}
    assert actions["lead.update"]["detail"]["changed"] == "name"
    assert actions["lead.update"]["by"]["kind"] == "api_key"
    assert actions["lead.do_not_contact"]["detail"]["do_not_contact"] is True
    (sync,) = [e for e in entries if e["kind"] == "crm_sync"]
    assert sync["summary"] == "CRM sync of v2: succeeded (hs succeeded)"

    assert (
        await http.get(f"/api/v1/leads/{lead_id}/history", headers=auth(other_key))
    ).status_code == 404
    assert (await http.get("/api/v1/leads/nobody/history", headers=auth(key))).status_code == 404
    assert (await http.get(f"/api/v1/leads/{lead_id}/history")).status_code == 401
