"""`GET /api/v1/leads/{id}/export`: everything held about one contact, and nothing about anyone
else (another lead of the tenant, another tenant's lead, an enrichment row with another
e-mail); 404 for unknown and foreign ids, 401 without a key."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlmodel import col, select

from api.app import create_app
from models.crm_tables import CrmLink, CrmSyncRun
from models.db import Database
from models.enrichment_tables import EnrichmentJob, EnrichmentRecord
from models.erasure import erase_contact_rows
from models.llm_tables import LlmCall
from models.settings import Settings
from models.tables import Escalation, LeadScoreRecord, OutboxMessage
from tests.api.test_erasure import _recorded_lead
from tests.conftest import make_tenant

pytestmark = pytest.mark.timeout(60)

EMAIL = "ana@example.com"  # what _recorded_lead's turn extracted
AT = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
async def http(
    sqlite_url: str, sqlite_db: Database, settings_factory: Callable[..., Settings]
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_factory(sqlite_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://leadflow.test") as c:
            yield c


async def _seed(db: Database, tenant_id: str, lead_id: str, conv_id: str) -> None:
    """The rows a lead's life leaves beside its transcript."""
    async with db.session() as session:
        session.add(
            LeadScoreRecord(
                tenant_id=tenant_id,
                lead_id=lead_id,
                conversation_id=conv_id,
                dedupe_key="turn-1",
                total=42,
                quality="WARM",
            )
        )
        session.add(
            Escalation(
                tenant_id=tenant_id,
                conversation_id=conv_id,
                dedupe_key="turn-1",
                rule="asks_for_human",
                reason="wants a person",
            )
        )
        session.add(
            OutboxMessage(
                tenant_id=tenant_id,
                idempotency_key=f"{conv_id}:turn-1",
                conversation_id=conv_id,
                channel="waha",
                to="31612345678@c.us",
                text="Hello Ana, happy to help",
                status="sent",
            )
        )
        session.add(
            LlmCall(
                tenant_id=tenant_id,
                conversation_id=conv_id,
                step="reply",
                provider="offline",
                model="rules",
                input_tokens=120,
                output_tokens=30,
                cost_usd=0.25,
                outcome="ok",
            )
        )
        session.add(
            CrmLink(tenant_id=tenant_id, integration_id="builtin", lead_id=lead_id, remote_id="r-1")
        )
        session.add(
            CrmSyncRun(
                run_key=f"run-{lead_id}",
                tenant_id=tenant_id,
                lead_id=lead_id,
                version=2,
                status="succeeded",
            )
        )
        job_id = f"job-{tenant_id}"
        session.add(EnrichmentJob(id=job_id, tenant_id=tenant_id, filename="leads.csv"))
        await session.commit()
        for row, email in ((1, "ANA@example.com "), (2, "someone.else@example.com")):
            session.add(
                EnrichmentRecord(
                    job_id=job_id,
                    tenant_id=tenant_id,
                    row_number=row,
                    data={"company": f"Company {row}", "email": email},
                    summary=f"summary {row}",
                )
            )
        await session.commit()


async def test_export_holds_everything_about_the_contact_and_nothing_else(
    http: httpx.AsyncClient, sqlite_db: Database
) -> None:
    tid, key = await make_tenant(sqlite_db)
    other_tid, other_key = await make_tenant(sqlite_db)
    lead_id, conv_id = await _recorded_lead(sqlite_db, tid)
    neighbour, neighbour_conv = await _recorded_lead(sqlite_db, tid, contact="31699999999@c.us")
    foreign_lead, _ = await _recorded_lead(sqlite_db, other_tid)
    await _seed(sqlite_db, tid, lead_id, conv_id)
    auth = {"Authorization": f"Bearer {key}"}

    answer = await http.get(f"/api/v1/leads/{lead_id}/export", headers=auth)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-disposition"] == f'attachment; filename="lead-{lead_id}.json"'
    doc = answer.json()
    assert doc["format"] == 1 and doc["tenant_id"] == tid
    assert datetime.fromisoformat(doc["exported_at"]) > datetime.now(UTC) - timedelta(minutes=5)
    assert (doc["lead"]["id"], doc["lead"]["address"]) == (lead_id, "31612345678@c.us")
    (conversation,) = doc["conversations"]
    assert conversation["conversation"]["id"] == conv_id
    assert [m["text"] for m in conversation["messages"]] == ["Hi, I'm Ana"]
    assert conversation["usage"]["calls"] == 1
    assert conversation["usage"]["input_tokens"] == 120
    assert [s["total"] for s in doc["scores"]] == [42]
    assert [e["rule"] for e in doc["escalations"]] == ["asks_for_human"]
    assert [o["text"] for o in doc["outbox"]] == ["Hello Ana, happy to help"]
    # The row carrying its e-mail (case and spaces aside), not the other one.
    assert [r["row_number"] for r in doc["enrichment"]] == [1]
    assert [link["remote_id"] for link in doc["crm_links"]] == ["r-1"]
    assert [run["status"] for run in doc["crm_syncs"]] == ["succeeded"]
    # Nothing of the neighbour (same tenant) is in it.
    assert neighbour not in answer.text and neighbour_conv not in answer.text

    # Unknown, foreign (both ways) and unauthenticated.
    for url, headers in (
        ("/api/v1/leads/nope/export", auth),
        (f"/api/v1/leads/{foreign_lead}/export", auth),
        (f"/api/v1/leads/{lead_id}/export", {"Authorization": f"Bearer {other_key}"}),
    ):
        refused = await http.get(url, headers=headers)
        assert refused.status_code == 404, (url, refused.text)
        assert refused.json()["error"] == "unknown lead"
    assert (await http.get(f"/api/v1/leads/{lead_id}/export")).status_code == 401


async def test_after_erasure_nothing_is_left_to_export_but_counts(
    http: httpx.AsyncClient, sqlite_db: Database
) -> None:
    tid, key = await make_tenant(sqlite_db)
    lead_id, conv_id = await _recorded_lead(sqlite_db, tid)
    neighbour, _ = await _recorded_lead(sqlite_db, tid, contact="31699999999@c.us")
    await _seed(sqlite_db, tid, lead_id, conv_id)
    auth = {"Authorization": f"Bearer {key}"}

    async with sqlite_db.session() as session:
        erased = await erase_contact_rows(session, tenant_id=tid, lead_id=lead_id)
    assert erased.counts["enrichment_records_blanked"] == 1
    assert erased.counts["llm_calls_anonymised"] == 1
    assert (await http.get(f"/api/v1/leads/{lead_id}/export", headers=auth)).status_code == 404
    assert (await http.get(f"/api/v1/leads/{neighbour}/export", headers=auth)).status_code == 200

    async with sqlite_db.session() as session:
        records = (
            await session.exec(select(EnrichmentRecord).order_by(col(EnrichmentRecord.row_number)))
        ).all()
        (call,) = (await session.exec(select(LlmCall).where(LlmCall.tenant_id == tid))).all()
    # The row that carried the e-mail keeps its place in the job, nothing of the person.
    assert (records[0].data, records[0].summary) == ({}, None)
    assert records[1].data["email"] == "someone.else@example.com"
    # The usage ledger keeps its counts, tied to no conversation.
    assert (call.conversation_id, call.input_tokens, call.cost_usd) == (None, 120, 0.25)
