"""Cross-tenant attempts on every resource (issue 10). Tenant A has one of everything on the real
stack: a running WhatsApp conversation and its lead, an enrichment job, a knowledge document, an
API key. Tenant B then tries every operation of the API that names a resource, with A's ids and
a valid body: each one is a 404, exactly what an id that does not exist gets, so B learns
nothing and changes nothing. B's collections show none of A's ids or words, and A's things are
as they were afterwards.

The operations are read from the app itself: a new route that takes one of these ids is tried
without touching this file, and a route with a new kind of id (or a new body) fails here until
it is added, so no resource escapes the check."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from sqlmodel import select
from temporalio.client import Client

from api.app import create_app
from models.db import Database
from models.settings import Settings
from models.tables import Conversation
from models.tenant import TenantSettings
from tests.conftest import make_tenant
from tests.fakes.crm import HubSpotFake
from tests.fakes.waha import FakeWaha
from tests.stack import LiveStack, live_stack

pytestmark = pytest.mark.timeout(180)

LEAD = "31655512345@c.us"
WORDS = "Hallo, ik ben Annelies en zoek een Skoda Superb combi"
DOCUMENT = "Werkplaats openingstijden: maandag tot vrijdag 07:30 tot 17:30"
CSV = "Company,Website\nAcme Crosstenant,\n"

# A valid body for each operation that takes one, so that B's attempt reaches the ownership
# check instead of being refused for its shape.
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/api/v1/conversations/{conversation_id}/handoff"): {"reason": "taking over"},
    ("POST", "/api/v1/conversations/{conversation_id}/release"): {},
    ("POST", "/api/v1/conversations/{conversation_id}/messages"): {"text": "hello from B"},
    ("POST", "/api/v1/conversations/{conversation_id}/close"): {"reason": "closed by B"},
    ("PATCH", "/api/v1/leads/{lead_id}"): {"name": "Mallory", "fields": {"budget": 1}},
    ("POST", "/api/v1/leads/{lead_id}/do-not-contact"): {
        "do_not_contact": True,
        "reason": "B says so",
    },
    ("POST", "/api/v1/keys/{key_id}/rotate"): {"grace_seconds": 0},
    ("PATCH", "/api/v1/users/{user_id}"): {"role": "viewer", "disabled": True},
    ("PATCH", "/api/v1/inventory/sources/{source_id}"): {"name": "B's", "paused": False},
    ("PATCH", "/api/v1/integrations/{integration_id}"): {"name": "B's", "enabled": False},
}
# Path parameters that name no resource of a tenant but a part of the caller's own settings
# (`/api/v1/settings/channels/{channel}/test` tests the caller's channel): no id to try.
NOT_RESOURCES = frozenset({"channel"})
# A's inventory source: paused, so its schedule starts nothing during the test.
SOURCE = {"name": "Voorraad", "kind": "json_feed", "url": "http://93.184.215.14/feed.json"}


async def _a_has_one_of_everything(
    stack: LiveStack, fake: FakeWaha, hubspot: HubSpotFake
) -> dict[str, str]:
    raw, headers = fake.message_webhook(from_=LEAD, body=WORDS)
    response = await stack.http.post(
        f"/webhooks/waha/{stack.tenant_id}",
        content=raw,
        headers={**headers, "content-type": "application/json"},
    )
    assert response.status_code in (200, 202), response.text
    await stack.wait_for(lambda: fake.sent, what="A's reply")

    async def conversation() -> Conversation | None:
        async with stack.db.session() as session:
            return (
                await session.exec(
                    select(Conversation).where(Conversation.tenant_id == stack.tenant_id)
                )
            ).first()

    conv = await stack.wait_for(conversation, what="A's conversation row")
    assert conv.lead_id is not None
    job = await stack.http.post(
        "/api/v1/jobs",
        headers=stack.auth,
        files={"file": ("leads.csv", CSV.encode(), "text/csv")},
        data={"steps": "email"},
    )
    assert job.status_code == 202, job.text
    document = await stack.http.post(
        "/api/v1/knowledge", headers=stack.auth, json={"title": "Werkplaats", "body": DOCUMENT}
    )
    assert document.status_code == 201, document.text
    keys = await stack.http.get("/api/v1/keys", headers=stack.auth)
    assert keys.status_code == 200, keys.text
    (key,) = keys.json()["keys"]
    integration = await stack.http.post(
        "/api/v1/integrations",
        headers=stack.auth,
        json={
            "kind": "hubspot",
            "name": "hs",
            "base_url": hubspot.url,
            "credentials": {"access_token": "pat-cross"},
        },
    )
    assert integration.status_code == 201, integration.text
    source = await stack.http.post(
        "/api/v1/inventory/sources", headers=stack.auth, json={**SOURCE, "paused": True}
    )
    assert source.status_code == 201, source.text
    opt_in = await stack.http.post(
        "/api/v1/campaigns/whatsapp-opt-ins",
        headers=stack.auth,
        json={"lead_id": conv.lead_id, "source": "showroom form"},
    )
    assert opt_in.status_code == 201, opt_in.text
    campaign = await stack.http.post(
        "/api/v1/campaigns",
        headers=stack.auth,
        json={
            "leads": {"has_phone": True},
            "channel": "waha",
            "message": {"text": WORDS},
            "hold_for_approval": True,
        },
    )
    assert campaign.status_code == 201, campaign.text
    person = await stack.http.post(
        "/api/v1/users",
        headers=stack.auth,
        json={"email": "anna@a.example", "name": "Anna", "role": "admin", "password": "x" * 12},
    )
    assert person.status_code == 201, person.text
    return {
        "user_id": str(person.json()["id"]),
        "campaign_id": campaign.json()["id"],
        "source_id": source.json()["id"],
        "integration_id": integration.json()["id"],
        "conversation_id": conv.id,
        "lead_id": conv.lead_id,
        "job_id": job.json()["job_id"],
        "document_id": document.json()["id"],
        "key_id": str(key["id"]),
    }


def _operations(stack: LiveStack) -> list[tuple[str, str, bool]]:
    """Every operation of the API's OpenAPI document (the routes the app serves) that names
    a resource by id, and whether it requires a body."""
    document = create_app(stack.settings).openapi()
    found = []
    for path, item in document["paths"].items():
        if not path.startswith("/api/v1/") or "{" not in path:
            continue
        for method, operation in item.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                required = bool(operation.get("requestBody", {}).get("required"))
                found.append((method.upper(), path, required))
    return sorted(found)


async def test_another_tenant_reaches_nothing_of_a_tenant(
    temporal_client: Client, settings_factory: Any, sqlite_url: str, fake_waha: FakeWaha
) -> None:
    settings: Settings = settings_factory(sqlite_url, debounce_seconds=0.2)
    with HubSpotFake(token="pat-cross") as hubspot:
        await _check(temporal_client, settings, fake_waha, hubspot)


async def _check(
    temporal_client: Client, settings: Settings, fake_waha: FakeWaha, hubspot: HubSpotFake
) -> None:
    async with live_stack(
        temporal_client,
        settings,
        tenant_settings=TenantSettings(playbook="car_dealership", waha=fake_waha.settings()),
    ) as stack:
        ids = await _a_has_one_of_everything(stack, fake_waha, hubspot)
        db: Database = stack.db
        _, b_key = await make_tenant(db)
        b = {"Authorization": f"Bearer {b_key}"}
        sent_before = len(fake_waha.sent)
        a_conversation = await stack.http.get(
            f"/api/v1/conversations/{ids['conversation_id']}", headers=stack.auth
        )
        a_lead = await stack.http.get(f"/api/v1/leads/{ids['lead_id']}", headers=stack.auth)

        operations = _operations(stack)
        # Sanity: the operations are there to try (a broken route listing would pass vacuously).
        assert ("DELETE", "/api/v1/leads/{lead_id}", False) in operations, operations
        assert len(operations) >= 15, operations
        answers: dict[tuple[str, str], int] = {}
        for method, path, needs_body in operations:
            params = re.findall(r"{(\w+)}", path)
            if set(params) <= NOT_RESOURCES:
                continue
            unknown = [p for p in params if p not in ids]
            assert not unknown, f"{method} {path}: add a resource of kind {unknown} to this test"
            url = path.format(**{p: ids[p] for p in params})
            if needs_body:
                assert (method, path) in BODIES, f"{method} {path}: add a valid body to BODIES"
            body = BODIES.get((method, path))
            if body is None:
                response = await stack.http.request(method, url, headers=b)
            else:
                response = await stack.http.request(method, url, headers=b, json=body)
            answers[(method, path)] = response.status_code
            # Nothing of A's in any answer, not even in an error's detail.
            for secret in (WORDS, DOCUMENT, LEAD.split("@")[0], "Annelies"):
                assert secret not in response.text, (method, path, response.text)
        assert {op: code for op, code in answers.items() if code != 404} == {}, answers

        # B's collections hold none of A's ids or words.
        for path in (
            "/api/v1/conversations",
            "/api/v1/conversations?q=Annelies",  # the inbox's search: B finds none of A's
            "/api/v1/jobs",
            "/api/v1/knowledge",
            "/api/v1/keys",
            "/api/v1/outbox",
            "/api/v1/audit",
            "/api/v1/usage",
            "/api/v1/settings",
            "/api/v1/inventory/sources",
            "/api/v1/campaigns",
            "/api/v1/users",
        ):
            response = await stack.http.get(path, headers=b)
            assert response.status_code == 200, (path, response.text)
            strings = [v for k, v in ids.items() if k not in ("key_id", "user_id")]
            text = response.text
            if path == "/api/v1/audit":
                # B's own attempts are in B's audit log, with the ids B sent and their 404s:
                # evidence of the probing, and nothing B did not know already.
                entries = response.json()["entries"]
                assert entries and all(e["status"] == 404 for e in entries), entries
                text = json.dumps([{**e, "resource_id": None} for e in entries])
            for secret in (*strings, WORDS, DOCUMENT, LEAD.split("@")[0]):
                assert secret not in text, (path, secret, text)
            if path == "/api/v1/keys":  # keys have small integer ids: compare them as such
                assert int(ids["key_id"]) not in [k["id"] for k in response.json()["keys"]]
            if path == "/api/v1/users":  # so have people
                assert response.json()["users"] == [], text
        search = await stack.http.get(
            "/api/v1/knowledge/search", params={"q": "Werkplaats"}, headers=b
        )
        assert search.status_code == 200 and search.json() == [], search.text

        # A's things are as they were: the key works, nothing was handed over, sent, renamed,
        # erased, paused or deleted.
        assert len(fake_waha.sent) == sent_before
        again = await stack.http.get(
            f"/api/v1/conversations/{ids['conversation_id']}", headers=stack.auth
        )
        assert again.status_code == 200, again.text
        assert again.json()["stage"] == a_conversation.json()["stage"]
        assert again.json().get("handoff") == a_conversation.json().get("handoff")
        lead = await stack.http.get(f"/api/v1/leads/{ids['lead_id']}", headers=stack.auth)
        assert lead.status_code == 200, lead.text
        assert json.dumps(lead.json(), sort_keys=True) == json.dumps(a_lead.json(), sort_keys=True)
        erasure = await stack.http.get(
            f"/api/v1/leads/{ids['lead_id']}/erasure", headers=stack.auth
        )
        assert erasure.status_code == 404, erasure.text
        job = await stack.http.get(f"/api/v1/jobs/{ids['job_id']}", headers=stack.auth)
        assert job.status_code == 200 and job.json()["status"] != "paused", job.text
        docs = await stack.http.get("/api/v1/knowledge", headers=stack.auth)
        assert [d["id"] for d in docs.json()] == [ids["document_id"]]
        keys = await stack.http.get("/api/v1/keys", headers=stack.auth)
        assert [k["revoked_at"] for k in keys.json()["keys"]] == [None], keys.text
        people = await stack.http.get("/api/v1/users", headers=stack.auth)
        assert [(u["role"], u["disabled"]) for u in people.json()["users"]] == [("admin", False)]
        state = await temporal_client.get_workflow_handle(ids["conversation_id"]).query("state")
        assert state["handoff"] is None
        held = await stack.http.get(f"/api/v1/campaigns/{ids['campaign_id']}", headers=stack.auth)
        assert held.status_code == 200 and held.json()["status"] == "awaiting_approval", held.text
        source = f"/api/v1/inventory/sources/{ids['source_id']}"
        kept = await stack.http.get(source, headers=stack.auth)
        assert kept.status_code == 200, kept.text
        assert (kept.json()["name"], kept.json()["schedule"]["paused"]) == ("Voorraad", True)
        # Its schedule would outlive the test on the shared dev server.
        assert (await stack.http.delete(source, headers=stack.auth)).status_code == 204
