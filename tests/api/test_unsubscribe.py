"""The unsubscribe link through the real app (api/routes/unsubscribe.py): one-click POST makes
the lead do-not-contact with the reason on record and the CRMs told (a real CRM worker and the
HubSpot fake), idempotently; GET only asks; a token that is not ours, a body that is not
one-click and a recipient leadflow no longer holds are 4xx that change nothing; no API key is
needed, and the API-key rate limits neither count nor refuse these requests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from api.app import create_app
from models.common import Channel, Role, Stage
from models.conversation import RecordTurnInput, conversation_workflow_id, lead_id_for
from models.crm import crm_sync_workflow_id
from models.db import Database
from models.lead_service import do_not_contact_reason
from models.messages import TranscriptEntry
from models.repo import conversations as conversation_repo
from models.repo import leads as lead_repo
from models.settings import Settings
from models.tables import Lead
from models.unsubscribe import Unsubscribe, make_token
from tests.api.test_leads_do_not_contact import crm_worker
from tests.conftest import TEST_SECRET, make_tenant
from tests.fakes.crm import HubSpotFake
from tests.fakes.smtp import free_port

pytestmark = pytest.mark.timeout(120)

CONTACT = "ana.lima@example.com"
CAMPAIGN = "cmp-7"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
async def api(
    sqlite_db: Database,
    sqlite_url: str,
    settings_factory: Callable[..., Settings],
    temporal_client: Client,
) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    # Tight API limits: these routes must not be counted or refused by them.
    settings = settings_factory(sqlite_url, rate_limit_auth_failures="2/minute")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        app.state.leadflow.temporal = temporal_client
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://leadflow.test") as http:
            yield http, settings


async def campaign_lead(db: Database, tenant_id: str, contact: str = CONTACT) -> str:
    """The lead of an e-mail conversation a campaign started (as its record step writes it)."""
    record = RecordTurnInput(
        conversation_id=conversation_workflow_id(tenant_id, Channel.EMAIL, contact),
        tenant_id=tenant_id,
        channel=Channel.EMAIL,
        contact=contact,
        contact_name="Ana Lima",
        turn_key="outreach",
        entries=(TranscriptEntry(role=Role.AI, text="Hello Ana, the Golf is in stock.", at=T0),),
        stage=Stage.AWAITING_RESPONSE,
        lead_id=lead_id_for(tenant_id, Channel.EMAIL, contact),
        turns=0,
    )
    async with db.session() as session:
        assert await conversation_repo.record_turn(session, record=record) is True
    return record.lead_id


def link(tenant_id: str, contact: str = CONTACT, campaign_id: str | None = CAMPAIGN) -> str:
    return f"/unsubscribe/{make_token(TEST_SECRET, Unsubscribe(tenant_id, contact, campaign_id))}"


async def lead_of(db: Database, tenant_id: str, lead_id: str) -> Lead:
    async with db.session() as session:
        lead = await lead_repo.get_lead(session, tenant_id=tenant_id, lead_id=lead_id)
    assert lead is not None
    return lead


async def transcript_texts(db: Database, tenant_id: str, contact: str = CONTACT) -> list[str]:
    async with db.session() as session:
        rows = await conversation_repo.transcript(
            session, conversation_id=conversation_workflow_id(tenant_id, Channel.EMAIL, contact)
        )
    return [row.text for row in rows]


async def test_get_asks_and_changes_nothing(
    api: tuple[httpx.AsyncClient, Settings], sqlite_db: Database
) -> None:
    http, _ = api
    tid, _ = await make_tenant(sqlite_db)
    lead_id = await campaign_lead(sqlite_db, tid)
    before = (await lead_of(sqlite_db, tid, lead_id)).version
    for _ in range(3):  # a link scanner, a preview, the recipient
        page = await http.get(link(tid))
        assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    body = page.text
    assert '<form method="post">' in body
    assert '<input type="hidden" name="List-Unsubscribe" value="One-Click">' in body
    assert '<button type="submit">Unsubscribe</button>' in body
    assert "a…@example.com" in body and CONTACT not in body
    assert '<html lang="en">' in body and "<title>Unsubscribe</title>" in body
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    assert "form-action 'self'" in page.headers["content-security-policy"]
    lead = await lead_of(sqlite_db, tid, lead_id)
    assert lead.do_not_contact is False and lead.version == before


async def test_one_click_post_unsubscribes_once_and_tells_the_crm(
    api: tuple[httpx.AsyncClient, Settings], sqlite_db: Database, temporal_client: Client
) -> None:
    http, settings = api
    tid, key = await make_tenant(sqlite_db)
    lead_id = await campaign_lead(sqlite_db, tid)
    before = (await lead_of(sqlite_db, tid, lead_id)).version
    with HubSpotFake(token="pat") as hubspot:
        created = await http.post(
            "/api/v1/integrations",
            headers={"Authorization": f"Bearer {key}"},
            json={
                "kind": "hubspot",
                "name": "hubspot",
                "base_url": hubspot.url,
                "credentials": {"access_token": "pat"},
            },
        )
        assert created.status_code == 201, created.text
        async with httpx.AsyncClient() as crm_http:
            async with await crm_worker(temporal_client, sqlite_db, settings, crm_http):
                # As a mailbox provider sends it: form-encoded, no cookie, no key.
                done = await http.post(link(tid), data=ONE_CLICK)
                assert done.status_code == 200, done.text
                assert "You are unsubscribed" in done.text
                sync = temporal_client.get_workflow_handle(crm_sync_workflow_id(tid, lead_id))
                result: Any = await sync.result()
                assert result["status"] == "succeeded", result
        (contact,) = hubspot.contacts.values()
        assert contact["properties"]["leadflow_do_not_contact"] == "true"
        assert contact["properties"]["email"] == CONTACT

    lead = await lead_of(sqlite_db, tid, lead_id)
    assert lead.do_not_contact is True and lead.version == before + 1
    entry = (
        "Do-not-contact set by the recipient (List-Unsubscribe): "
        f"unsubscribed via List-Unsubscribe (campaign {CAMPAIGN})"
    )
    assert (await transcript_texts(sqlite_db, tid)).count(entry) == 1
    async with sqlite_db.session() as session:
        refusal = await do_not_contact_reason(
            session, tenant_id=tid, channel=Channel.EMAIL, contact=CONTACT.upper()
        )
    assert refusal is not None and "do-not-contact" in refusal

    # Again (a provider's retry, the recipient's second click): 200, nothing new written.
    again = await http.post(link(tid), data=ONE_CLICK)
    assert again.status_code == 200 and "You are unsubscribed" in again.text
    lead = await lead_of(sqlite_db, tid, lead_id)
    assert lead.version == before + 1
    assert (await transcript_texts(sqlite_db, tid)).count(entry) == 1
    # The page now says so instead of asking.
    page = await http.get(link(tid))
    assert page.status_code == 200 and "You are unsubscribed" in page.text
    assert "<form" not in page.text


async def test_a_token_that_is_not_ours_changes_nothing(
    api: tuple[httpx.AsyncClient, Settings], sqlite_db: Database
) -> None:
    http, _ = api
    tid, _ = await make_tenant(sqlite_db)
    lead_id = await campaign_lead(sqlite_db, tid)
    before = (await lead_of(sqlite_db, tid, lead_id)).version
    good = link(tid)
    token = good.rsplit("/", 1)[1]
    tampered = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    foreign = f"/unsubscribe/{make_token('another-deployment', Unsubscribe(tid, CONTACT, None))}"
    for path in (
        tampered,
        foreign,
        "/unsubscribe/not-a-token",
        "/unsubscribe/" + "A" * 5000,
        "/unsubscribe/%F0%9F%98%80",
        f"/unsubscribe/{token[: len(token) // 2]}",
    ):
        for method in ("GET", "POST"):
            answer = await http.request(method, path, data=ONE_CLICK if method == "POST" else None)
            assert answer.status_code == 404, (method, path, answer.text)
            assert answer.json()["error"] == "unknown unsubscribe link"
            assert "not valid" in answer.json()["detail"]
    lead = await lead_of(sqlite_db, tid, lead_id)
    assert lead.do_not_contact is False and lead.version == before


async def test_a_post_that_is_not_one_click_changes_nothing(
    api: tuple[httpx.AsyncClient, Settings], sqlite_db: Database
) -> None:
    http, _ = api
    tid, _ = await make_tenant(sqlite_db)
    lead_id = await campaign_lead(sqlite_db, tid)
    before = (await lead_of(sqlite_db, tid, lead_id)).version
    for kwargs in (
        {},
        {"data": {"List-Unsubscribe": "Yes"}},
        {"data": {"unsubscribe": "One-Click"}},
        {"json": ONE_CLICK},
        {"content": b"\xff\xfe", "headers": {"content-type": "application/x-www-form-urlencoded"}},
    ):
        refused = await http.post(link(tid), **kwargs)
        assert refused.status_code == 422, (kwargs, refused.text)
        assert refused.json()["error"] == "invalid request"
    lead = await lead_of(sqlite_db, tid, lead_id)
    assert lead.do_not_contact is False and lead.version == before


async def test_a_recipient_no_longer_held_is_404(
    api: tuple[httpx.AsyncClient, Settings], sqlite_db: Database
) -> None:
    http, _ = api
    tid, _ = await make_tenant(sqlite_db)
    other, _ = await make_tenant(sqlite_db)
    lead_id = await campaign_lead(sqlite_db, tid)
    for path in (
        link(tid, contact="nobody@example.com"),
        link(other),  # the same address at another tenant: not its lead
        link("t-gone"),
    ):
        for method in ("GET", "POST"):
            answer = await http.request(method, path, data=ONE_CLICK if method == "POST" else None)
            assert answer.status_code == 404, (method, path, answer.text)
            assert answer.json()["error"] == "unknown recipient"
    lead = await lead_of(sqlite_db, tid, lead_id)
    assert lead.do_not_contact is False


async def test_the_lead_with_that_email_when_no_conversation_lead_exists(
    api: tuple[httpx.AsyncClient, Settings], sqlite_db: Database
) -> None:
    """A lead keyed by its WhatsApp number that has the e-mail (a CSV row, an operator)."""
    http, _ = api
    tid, _ = await make_tenant(sqlite_db)
    async with sqlite_db.session() as session:
        lead, _ = await lead_repo.insert_lead_once(
            session,
            lead_id=lead_id_for(tid, Channel.WAHA, "31612345678@c.us"),
            tenant_id=tid,
            channel=Channel.WAHA.value,
            address="31612345678@c.us",
            name="Ana Lima",
            email="Ana.Lima@Example.com",
            phone="+31612345678",
        )
    done = await http.post(link(tid), data=ONE_CLICK)
    assert done.status_code == 200, done.text
    assert (await lead_of(sqlite_db, tid, lead.id)).do_not_contact is True


async def test_temporal_down_still_unsubscribes_and_asks_for_a_retry(
    sqlite_db: Database, sqlite_url: str, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(sqlite_url, temporal_address=f"127.0.0.1:{free_port()}")
    tid, _ = await make_tenant(sqlite_db)
    lead_id = await campaign_lead(sqlite_db, tid)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://leadflow.test") as http:
            answer = await http.post(link(tid), data=ONE_CLICK)
    assert answer.status_code == 503, answer.text
    assert "recorded" in answer.json()["detail"]
    assert (await lead_of(sqlite_db, tid, lead_id)).do_not_contact is True


async def test_no_key_no_audit_no_api_rate_limit(
    api: tuple[httpx.AsyncClient, Settings], sqlite_db: Database
) -> None:
    """The failed-authentication limit (2/minute here) is for /api/v1/: many requests without a
    key to these routes are neither counted as failures nor refused."""
    http, _ = api
    tid, _ = await make_tenant(sqlite_db)
    await campaign_lead(sqlite_db, tid)
    for _ in range(4):
        assert (await http.get("/unsubscribe/not-a-token")).status_code == 404
        assert (await http.get(link(tid))).status_code == 200
    assert (await http.post(link(tid), data=ONE_CLICK)).status_code == 200
    assert (await http.post(link(tid), data=ONE_CLICK)).status_code == 200
    # ... and they did not spend the address's failed-authentication budget.
    for _ in range(2):
        assert (await http.get("/api/v1/settings")).status_code == 401
    assert (await http.get("/api/v1/settings")).status_code == 429
