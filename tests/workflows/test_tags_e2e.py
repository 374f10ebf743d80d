"""Tags end to end: WhatsApp messages through the real API and worker on the real Temporal dev
server; the conversation workflow computes the lead's tags at its record step, the record step
keeps them on the lead, the API shows and filters them, and the CRM sync writes them (and the
custom attributes) to a HubSpot fake built from ../shared/wire/hubspot.md."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client

from models.conversation import conversation_workflow_id
from models.settings import Settings
from models.tenant import TenantSettings
from tests.fakes.crm import HubSpotFake
from tests.fakes.waha import FakeWaha
from tests.stack import LiveStack, live_stack

LEAD = "31611112222@c.us"


async def _post(stack: LiveStack, fake: FakeWaha, text: str) -> None:
    raw, headers = fake.message_webhook(from_=LEAD, body=text)
    response = await stack.http.post(
        f"/webhooks/waha/{stack.tenant_id}",
        content=raw,
        headers={**headers, "content-type": "application/json"},
    )
    assert response.status_code in (200, 202), response.text


async def _lead(stack: LiveStack, lead_id: str, *, having: str) -> Any:
    response = await stack.http.get(f"/api/v1/leads/{lead_id}", headers=stack.auth)
    if response.status_code != 200:
        return None
    body = response.json()
    return body if having in body["tags"] else None


async def test_a_conversation_tags_its_lead_the_api_filters_and_the_crm_gets_them(
    temporal_client: Client, settings_factory: Any, database_url: str, fake_waha: FakeWaha
) -> None:
    settings: Settings = settings_factory(database_url, debounce_seconds=0.5)
    with HubSpotFake(token="pat-tags") as hubspot:
        async with live_stack(
            temporal_client,
            settings,
            tenant_settings=TenantSettings(playbook="car_dealership", waha=fake_waha.settings()),
        ) as stack:
            connected = await stack.http.post(
                "/api/v1/integrations",
                headers=stack.auth,
                json={
                    "kind": "hubspot",
                    "name": "hs",
                    "base_url": hubspot.url,
                    "credentials": {"access_token": "pat-tags"},
                },
            )
            assert connected.status_code in (200, 201), connected.text
            await _post(
                stack,
                fake_waha,
                "Hi, I'm Jan, jan@example.com, looking for a Volkswagen Golf, budget around "
                "€25.000",
            )
            await stack.wait_for(lambda: fake_waha.sent, what="the first reply")
            await _post(stack, fake_waha, "Could I come for a test drive this week?")
            await stack.wait_for(lambda: len(fake_waha.sent) >= 2, what="the second reply")

            conv_id = conversation_workflow_id(stack.tenant_id, "waha", LEAD)
            detail = (
                await stack.http.get(f"/api/v1/conversations/{conv_id}", headers=stack.auth)
            ).json()
            lead_id = detail["lead_id"]
            lead = await stack.wait_for(
                lambda: _lead(stack, lead_id, having="test-drive"),
                what="the lead's tags",
                timeout=60,
            )
            tags = set(lead["tags"])
            assert {
                "interest-volkswagen-golf",
                "make-volkswagen",
                "budget-20k-30k",
                "channel-waha",
                "test-drive",
            } <= tags, tags
            assert any(t.startswith("stage-") for t in tags)
            assert lead["tags"] == sorted(lead["tags"])
            attributes = lead["attributes"]
            assert attributes["budget_max"] == 25000
            assert attributes["test_drive_requested"] is True
            assert attributes["source_channel"] == "waha"
            assert attributes["total_conversations"] == 1
            assert attributes["last_interest_date"] is not None
            assert attributes["sentiment"] in ("positive", "neutral", "negative")
            assert attributes["lead_score"] == lead["score"]

            # The list filters on tags (every tag asked for), and shows them.
            listed = await stack.http.get(
                "/api/v1/leads",
                params=[("tag", "test-drive"), ("tag", "budget-20k-30k")],
                headers=stack.auth,
            )
            assert listed.status_code == 200, listed.text
            assert [lead["id"] for lead in listed.json()["leads"]] == [lead_id]
            assert "test-drive" in listed.json()["leads"][0]["tags"]
            for other in ("vip", "budget-50k-plus"):
                none = await stack.http.get(
                    "/api/v1/leads",
                    params=[("tag", "test-drive"), ("tag", other)],
                    headers=stack.auth,
                )
                assert none.json()["leads"] == [], other
            bad = await stack.http.get(
                "/api/v1/leads", params={"tag": "Test Drive"}, headers=stack.auth
            )
            assert bad.status_code == 422
            too_many = await stack.http.get(
                "/api/v1/leads", params=[("tag", f"t{n}") for n in range(11)], headers=stack.auth
            )
            assert too_many.status_code == 422

            # The CRM sync carried the tags and the attributes (the default HubSpot mapping):
            # its last sync wrote the lead's tags as they are now.
            async def synced() -> dict[str, Any] | None:
                contact = hubspot.by_email("jan@example.com")
                now = await _lead(stack, lead_id, having="test-drive")
                if contact is None or now is None:
                    return None
                props: dict[str, Any] = contact["properties"]
                written = props.get("leadflow_tags", "").split(";")
                return props if written == now["tags"] else None

            props = await stack.wait_for(synced, what="the lead's tags in HubSpot", timeout=90)
            assert props["leadflow_budget_max"] == "25000"
            assert props["leadflow_test_drive_requested"] == "true"
            assert props["leadflow_source_channel"] == "waha"
            assert props["leadflow_total_conversations"] == "1"
            assert props["leadflow_urgency"] in ("high", "normal")
