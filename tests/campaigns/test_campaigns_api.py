"""`/api/v1/campaigns` through the real app, the real dev server and the real CampaignWorkflow
with its real activities (the conversations it starts wait on their queue: their own sending is
the end-to-end test's): creation from a job or a filter, the recipients frozen, skips at send
time, the numbers, the controls as Updates, bad input and tenant isolation."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlmodel import select
from temporalio.client import Client

from api.app import create_app
from models.campaign_tables import CampaignRecipient
from models.conversation import ConversationInput, conversation_workflow_id
from models.db import Database
from models.outreach import MEMO_CAMPAIGN
from models.settings import Settings
from tests.campaigns.seed import Person, campaign_worker, seed_job
from tests.conftest import make_tenant

pytestmark = pytest.mark.timeout(180)

ALWAYS = {"start": "00:00", "end": "00:00", "timezone": "UTC"}
"""A send window of the whole day: the tests do not depend on the hour they run at."""


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], database_url: str) -> Settings:
    return settings_factory(database_url)


@pytest.fixture
async def api(
    db: Database, settings: Settings, temporal_client: Client
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        app.state.leadflow.temporal = temporal_client
        transport = httpx.ASGITransport(app=app)
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://leadflow.test") as http,
            campaign_worker(temporal_client, db, settings),
        ):
            yield http


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def wait_for(predicate: Any, what: str, timeout: float = 60.0) -> Any:
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def campaign(http: httpx.AsyncClient, key: str, campaign_id: str) -> dict[str, Any]:
    response = await http.get(f"/api/v1/campaigns/{campaign_id}", headers=auth(key))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_job_campaign_sends_the_personalised_email_and_skips_do_not_contact(
    api: httpx.AsyncClient, db: Database, temporal_client: Client
) -> None:
    tenant, key = await make_tenant(db)
    job_id, (ann, bob, _cid) = await seed_job(
        db,
        tenant,
        [
            Person("Ann Ames", "ann@acme.test", company="Acme"),
            Person("Bob Bell", "bob@bell.test", company="Bell", do_not_contact=True),
            Person("Cid Cole", None, phone="+31612345678", company="Cole"),  # no e-mail
        ],
    )
    response = await api.post(
        "/api/v1/campaigns",
        json={"job_id": job_id, "name": "autumn", "rate_per_hour": 3600, "send_window": ALWAYS},
        headers=auth(key),
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["numbers"]["total"] == 2 and created["excluded"] == {"no_email": 1}
    assert created["personalised"] is True and created["channel"] == "email"
    assert created["workflow_id"] == f"campaign:{tenant}:{created['id']}"

    async def done() -> dict[str, Any] | None:
        body = await campaign(api, key, created["id"])
        return body if body["status"] == "completed" else None

    body = await wait_for(done, "the campaign to complete", timeout=120)
    numbers = body["numbers"]
    assert (numbers["sent"], numbers["skipped"]) == (1, 1)
    assert numbers["skipped_by_reason"] == {"do_not_contact": 1}
    assert numbers["replied"] == 0 and numbers["reply_rate"] == 0.0
    assert body["finished_at"] is not None

    # Ann's outreach conversation: started with the campaign's id, her row's subject and text.
    async with db.session() as session:
        rows = (
            await session.exec(
                select(CampaignRecipient).where(CampaignRecipient.campaign_id == created["id"])
            )
        ).all()
    by_lead = {row.lead_id: row for row in rows}
    assert by_lead[ann].status == "sent" and by_lead[bob].skip_reason == "do_not_contact"
    conversation_id = conversation_workflow_id(tenant, "email", "ann@acme.test")
    assert by_lead[ann].conversation_id == conversation_id
    handle = temporal_client.get_workflow_handle(conversation_id)
    described = await handle.describe()
    assert (await described.memo())[MEMO_CAMPAIGN] == created["id"]
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    [conversation] = await temporal_client.data_converter.decode(
        started.input.payloads, [ConversationInput]
    )
    assert isinstance(conversation, ConversationInput)
    assert conversation.campaign_id == created["id"]
    assert conversation.subject == "An idea for Acme"
    assert conversation.outreach is not None
    assert conversation.outreach.text == "Dear Ann Ames, we wrote this for Acme."
    assert conversation.contact_name == "Ann Ames"

    listed = (await api.get("/api/v1/campaigns", headers=auth(key))).json()["campaigns"]
    assert [c["id"] for c in listed] == [created["id"]]


async def test_controls_are_updates_answered_with_the_campaign(
    api: httpx.AsyncClient, db: Database
) -> None:
    tenant, key = await make_tenant(db)
    job_id, _ = await seed_job(db, tenant, [Person(f"P{n}", f"p{n}@acme.test") for n in range(3)])
    response = await api.post(
        "/api/v1/campaigns",
        json={
            "leads": {"source_job_id": job_id},
            "message": {"subject": "Hello {first_name}", "text": "Hi {name} of {company}"},
            "hold_for_approval": True,
            "rate_per_hour": 1,
            "send_window": {"start": "00:00", "end": "00:00", "timezone": "Europe/Amsterdam"},
        },
        headers=auth(key),
    )
    assert response.status_code == 201, response.text
    created = response.json()
    cid = created["id"]
    assert created["status"] == "awaiting_approval" and created["personalised"] is False
    assert created["selection"] == {"source_job_id": job_id}

    async def control(action: str, **headers: str) -> httpx.Response:
        return await api.post(f"/api/v1/campaigns/{cid}/{action}", headers={**auth(key), **headers})

    refused = await control("pause")
    assert refused.status_code == 409
    assert refused.json() == {
        "error": "pause refused",
        "detail": "campaign is awaiting approval: approve it (or cancel it) first",
    }
    approved = await control("approve", **{"Idempotency-Key": "approve-1"})
    assert approved.status_code == 200 and approved.json()["status"] == "running"
    again = await control("approve", **{"Idempotency-Key": "approve-1"})
    assert again.status_code == 200 and again.json()["status"] == "running"
    assert (await campaign(api, key, cid))["approved_at"] is not None

    # one an hour: the first goes at once, then the campaign waits
    async def first_sent() -> bool:
        return bool((await campaign(api, key, cid))["numbers"]["sent"] == 1)

    await wait_for(first_sent, "the first send")
    paused = await control("pause")
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    assert (await campaign(api, key, cid))["status"] == "paused"
    assert (await control("pause")).json()["detail"] == "campaign is already paused"
    resumed = await control("resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "running"
    cancelled = await control("cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    body = await campaign(api, key, cid)
    assert body["status"] == "cancelled" and body["finished_at"] is not None
    assert body["numbers"]["sent"] == 1 and body["numbers"]["queued"] == 2
    gone = await control("resume")
    assert gone.status_code == 409 and gone.json()["detail"] == "campaign is cancelled"
    assert (await control("cancel")).json()["detail"] == "campaign is already cancelled"


async def test_whatsapp_needs_a_recorded_opt_in(api: httpx.AsyncClient, db: Database) -> None:
    tenant, key = await make_tenant(db)
    job_id, (ann, bob) = await seed_job(
        db,
        tenant,
        [
            Person("Ann", "ann@acme.test", phone="+31611111111"),
            Person("Bob", "bob@acme.test", phone="+31622222222"),
        ],
    )
    spec = {"job_id": job_id, "channel": "waha", "message": {"text": "Hi {first_name}!"}}
    refused = await api.post("/api/v1/campaigns", json=spec, headers=auth(key))
    assert refused.status_code == 422
    assert "2 no_opt_in" in refused.json()["detail"]
    assert "POST /api/v1/campaigns/whatsapp-opt-ins" in refused.json()["detail"]

    opt_in = await api.post(
        "/api/v1/campaigns/whatsapp-opt-ins",
        json={"lead_id": ann, "source": "test-drive form"},
        headers=auth(key),
    )
    assert opt_in.status_code == 201 and opt_in.json()["source"] == "test-drive form"
    unknown = await api.post(
        "/api/v1/campaigns/whatsapp-opt-ins",
        json={"lead_id": "nobody", "source": "form"},
        headers=auth(key),
    )
    assert unknown.status_code == 404
    created = await api.post(
        "/api/v1/campaigns", json={**spec, "hold_for_approval": True}, headers=auth(key)
    )
    assert created.status_code == 201, created.text
    assert created.json()["numbers"]["total"] == 1
    assert created.json()["excluded"] == {"no_opt_in": 1}
    withdrawn = await api.delete(f"/api/v1/campaigns/whatsapp-opt-ins/{ann}", headers=auth(key))
    assert withdrawn.status_code == 204
    missing = await api.delete(f"/api/v1/campaigns/whatsapp-opt-ins/{bob}", headers=auth(key))
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("spec", "status", "says"),
    [
        ({"job_id": "no-such-job"}, 404, "unknown job"),
        ({}, 422, "exactly one of job_id"),
        ({"job_id": "x", "leads": {}}, 422, "exactly one of job_id"),
        ({"job_id": "x", "rate_per_hour": 0}, 422, "rate_per_hour"),
        ({"job_id": "x", "rate_per_hour": -5}, 422, "rate_per_hour"),
        ({"job_id": "x", "channel": "chatwoot"}, 422, "a campaign sends by"),
        ({"job_id": "x", "channel": "fax"}, 422, "channel"),
        (
            {"job_id": "x", "send_window": {"start": "09:00", "end": "17:00", "timezone": "X/Y"}},
            422,
            "IANA",
        ),
        ({"job_id": "x", "message": {"text": ""}}, 422, "text"),
        ({"leads": {"search": "nobody-matches-this"}}, 422, "no lead matches the filter"),
        ({"leads": {"quality": "SCORCHING"}}, 422, "quality"),
        ({"leads": {"q": "nobody-matches-this"}}, 422, "no lead matches the filter"),
        ({"leads": {"colour": "red"}}, 422, "colour"),
        ({"job_id": "x", "rate_per_hr": 10}, 422, "rate_per_hr"),
    ],
)
async def test_bad_input_is_refused_and_starts_nothing(
    api: httpx.AsyncClient, db: Database, spec: dict[str, Any], status: int, says: str
) -> None:
    _, key = await make_tenant(db)
    response = await api.post("/api/v1/campaigns", json=spec, headers=auth(key))
    assert response.status_code == status, response.text
    assert says in response.text
    listed = await api.get("/api/v1/campaigns", headers=auth(key))
    assert listed.json() == {"campaigns": []}


async def test_a_job_without_personalised_emails_needs_a_text(
    api: httpx.AsyncClient, db: Database
) -> None:
    tenant, key = await make_tenant(db)
    _, (lead_id,) = await seed_job(db, tenant, [Person("Ann", "ann@acme.test")])
    # a lead of no job: the filter finds it, but it has no enrichment e-mail
    from models.tables import Lead

    async with db.session() as session:
        lead = await session.get(Lead, lead_id)
        assert lead is not None
        lead.source_job_id = None
        session.add(lead)
        await session.commit()
    response = await api.post(
        "/api/v1/campaigns", json={"leads": {"search": "ann"}}, headers=auth(key)
    )
    assert response.status_code == 422
    assert "1 no_personalised_email" in response.json()["detail"]


async def test_tenants_see_and_steer_only_their_own_campaigns(
    api: httpx.AsyncClient, db: Database
) -> None:
    tenant, key = await make_tenant(db)
    _, other_key = await make_tenant(db)
    job_id, _ = await seed_job(db, tenant, [Person("Ann", "ann@acme.test")])
    created = await api.post(
        "/api/v1/campaigns",
        json={"job_id": job_id, "hold_for_approval": True},
        headers=auth(key),
    )
    cid = created.json()["id"]
    # the default window: the neutral playbook has no quiet hours, so the default ones
    # (21:00-08:00) in the tenant's time zone
    assert created.json()["send_window"] == {
        "start": "08:00:00",
        "end": "21:00:00",
        "timezone": "UTC",
    }
    # the other tenant: not its job, not its campaign
    foreign_job = await api.post(
        "/api/v1/campaigns", json={"job_id": job_id}, headers=auth(other_key)
    )
    assert foreign_job.status_code == 404
    assert (await api.get(f"/api/v1/campaigns/{cid}", headers=auth(other_key))).status_code == 404
    for action in ("approve", "pause", "resume", "cancel"):
        response = await api.post(f"/api/v1/campaigns/{cid}/{action}", headers=auth(other_key))
        assert response.status_code == 404, action
    assert (await api.get("/api/v1/campaigns", headers=auth(other_key))).json() == {"campaigns": []}
    assert (await campaign(api, key, cid))["status"] == "awaiting_approval"
    assert (await api.get("/api/v1/campaigns")).status_code == 401
    bad_id = await api.get("/api/v1/campaigns/../../etc", headers=auth(key))
    assert bad_id.status_code in (404, 422)
