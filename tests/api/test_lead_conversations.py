"""`GET /api/v1/leads/{id}` lists the lead's conversations as the inbox summarises them (newest
activity first, the latest `LEAD_CONVERSATIONS` of them and how many there are), only the
tenant's; another tenant's lead is 404. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from api.app import create_app
from models.db import Database
from models.inbox_view import LEAD_CONVERSATIONS
from models.settings import Settings
from models.tables import Conversation, Lead, Message
from tests.conftest import make_tenant

pytestmark = pytest.mark.timeout(120)

T0 = datetime(2026, 4, 6, 9, 0, tzinfo=UTC)


@pytest.fixture
async def http(
    db: Database, database_url: str, settings_factory: Callable[..., Settings]
) -> AsyncIterator[httpx.AsyncClient]:
    # Reading a lead needs no Temporal: an address nobody listens on.
    app = create_app(settings_factory(database_url, temporal_address="127.0.0.1:1"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://leadflow.test") as c:
            yield c


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def add_lead(db: Database, tenant_id: str, name: str) -> str:
    lead_id = f"{tenant_id}-{name}"
    async with db.session() as session:
        session.add(
            Lead(
                id=lead_id,
                tenant_id=tenant_id,
                channel="waha",
                address=f"{name}@c.us",
                name=name,
                created_at=T0,
            )
        )
        await session.commit()
    return lead_id


def conversation(tenant_id: str, lead_id: str, n: int, **values: Any) -> Conversation:
    return Conversation(
        id=f"conv:{tenant_id}:{values.get('channel', 'waha')}:{lead_id}:{n}",
        tenant_id=tenant_id,
        channel=values.pop("channel", "waha"),
        contact=f"{lead_id}-{n}@c.us",
        lead_id=lead_id,
        created_at=T0,
        updated_at=values.pop("updated_at", T0 + timedelta(minutes=n)),
        **values,
    )


async def get_lead(http: httpx.AsyncClient, key: str, lead_id: str) -> dict[str, Any]:
    response = await http.get(f"/api/v1/leads/{lead_id}", headers=auth(key))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_lead_lists_its_conversations_newest_activity_first(
    http: httpx.AsyncClient, db: Database
) -> None:
    tenant, key = await make_tenant(db)
    other, other_key = await make_tenant(db)
    ana = await add_lead(db, tenant, "ana")
    bo = await add_lead(db, tenant, "bo")
    lonely = await add_lead(db, tenant, "lonely")
    mallory = await add_lead(db, other, "mallory")
    # Ana's e-mail conversation began first but was active last: it comes first.
    older = conversation(
        tenant,
        ana,
        1,
        channel="email",
        stage="human_handoff",
        turns=3,
        last_message_at=T0 + timedelta(minutes=5),
        updated_at=T0 + timedelta(minutes=30),
    )
    newer = conversation(
        tenant,
        ana,
        2,
        stage="qualifying",
        turns=1,
        last_message_at=T0 + timedelta(minutes=20),
        updated_at=T0 + timedelta(minutes=20),
    )
    async with db.session() as session:
        session.add_all([older, newer, conversation(tenant, bo, 1)])
        # Another tenant's row naming Ana's lead (it cannot happen through leadflow): the
        # tenant scoping keeps it out of Ana's page all the same.
        session.add(conversation(other, ana, 9, updated_at=T0 + timedelta(hours=1)))
        await session.commit()
        session.add(
            Message(
                conversation_id=newer.id,
                tenant_id=tenant,
                role="lead",
                text="Is the Golf still for sale?",
                dedupe_key="m1",
                at=T0 + timedelta(minutes=20),
            )
        )
        await session.commit()

    body = await get_lead(http, key, ana)
    assert body["conversations_total"] == 2
    listed = body["conversations"]
    assert [c["id"] for c in listed] == [older.id, newer.id]
    first, second = listed
    assert first["channel"] == "email"
    assert first["stage"] == "human_handoff"
    assert first["needs_human"] is True
    assert first["turns"] == 3
    assert first["lead_id"] == ana
    assert datetime.fromisoformat(first["last_message_at"]) == T0 + timedelta(minutes=5)
    assert datetime.fromisoformat(first["updated_at"]) == T0 + timedelta(minutes=30)
    assert second["needs_human"] is False
    assert second["last_message"]["text"] == "Is the Golf still for sale?"
    assert second["last_message"]["role"] == "lead"
    # The same summaries the inbox lists (one shape, one query).
    inbox = await http.get("/api/v1/conversations", headers=auth(key))
    assert inbox.status_code == 200, inbox.text
    by_id = {c["id"]: c for c in inbox.json()["conversations"]}
    assert listed == [by_id[older.id], by_id[newer.id]]

    # A lead without conversations lists none.
    body = await get_lead(http, key, lonely)
    assert body["conversations"] == [] and body["conversations_total"] == 0

    # Another tenant's lead is unknown, and its conversations are not shown.
    for mine, theirs in ((key, mallory), (other_key, ana)):
        response = await http.get(f"/api/v1/leads/{theirs}", headers=auth(mine))
        assert response.status_code == 404, response.text
        assert response.json()["error"] == "unknown lead"
    assert (await get_lead(http, other_key, mallory))["conversations"] == []


async def test_the_list_is_bounded_to_the_latest(http: httpx.AsyncClient, db: Database) -> None:
    tenant, key = await make_tenant(db)
    lead = await add_lead(db, tenant, "busy")
    made = LEAD_CONVERSATIONS + 3
    async with db.session() as session:
        session.add_all(conversation(tenant, lead, n) for n in range(made))
        await session.commit()
    body = await get_lead(http, key, lead)
    assert body["conversations_total"] == made
    latest = [c["id"] for c in body["conversations"]]
    assert latest == [conversation(tenant, lead, n).id for n in reversed(range(3, made))]


def test_the_openapi_document_shows_the_conversations(
    settings_factory: Callable[..., Settings], sqlite_url: str
) -> None:
    document = create_app(settings_factory(sqlite_url)).openapi()
    lead = document["components"]["schemas"]["LeadOut"]
    assert {"conversations", "conversations_total"} <= set(lead["required"])
    conversations = lead["properties"]["conversations"]
    # the inbox's summary, not a second copy of it
    assert conversations["items"] == {"$ref": "#/components/schemas/ConversationSummary"}
    assert str(LEAD_CONVERSATIONS) in conversations["description"]
