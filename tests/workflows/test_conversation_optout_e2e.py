"""An opt-out sticks, end to end (real worker and activities, offline provider, fake WAHA, dev
server): the lead's "stop" is acknowledged once, closes the conversation and marks the lead
do-not-contact in the database; what the lead writes later starts a new run that resumes the
history, records the message and answers nothing; an operator message to them is refused."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.client import Client

from models.conversation import conversation_workflow_id, lead_id_for
from models.settings import Settings
from models.tenant import TenantSettings
from tests.fakes.waha import FakeWaha
from tests.stack import LiveStack, live_stack

pytestmark = pytest.mark.timeout(180)

LEAD = "31655500077@c.us"


async def _say(stack: LiveStack, fake_waha: FakeWaha, text: str) -> None:
    raw, headers = fake_waha.message_webhook(from_=LEAD, body=text)
    response = await stack.http.post(
        f"/webhooks/waha/{stack.tenant_id}",
        content=raw,
        headers={**headers, "content-type": "application/json"},
    )
    assert response.status_code in (200, 202), response.text


def _replies(fake_waha: FakeWaha) -> list[str]:
    return [str(b.get("text")) for b in fake_waha.sent if b.get("chatId") == LEAD]


async def test_an_opt_out_marks_the_lead_and_later_messages_are_recorded_not_answered(
    temporal_client: Client, settings_factory: Any, sqlite_url: str, fake_waha: FakeWaha
) -> None:
    settings: Settings = settings_factory(sqlite_url, debounce_seconds=0.3)
    async with live_stack(
        temporal_client,
        settings,
        tenant_settings=TenantSettings(playbook="car_dealership", waha=fake_waha.settings()),
    ) as stack:
        conv_id = conversation_workflow_id(stack.tenant_id, "waha", LEAD)
        lead_id = lead_id_for(stack.tenant_id, "waha", LEAD)
        url = f"/api/v1/conversations/{conv_id}"

        await _say(stack, fake_waha, "Hoi, ik zoek een Volkswagen Golf")
        await stack.wait_for(lambda: len(_replies(fake_waha)) == 1, what="the first reply")
        await _say(stack, fake_waha, "Stop, stuur me geen berichten meer")

        async def closed() -> dict[str, Any] | None:
            r = await stack.http.get(url, headers=stack.auth)
            # 404 until the first turn's record step commits: the reply reaches WAHA before its
            # activity records the turn, and a loaded machine widens that gap.
            if r.status_code == 404:
                return None
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            return body if body["stage"] == "closed" else None

        await stack.wait_for(closed, what="the conversation closed")
        await stack.wait_for(lambda: len(_replies(fake_waha)) == 2, what="the acknowledgement")
        lead = await stack.http.get(f"/api/v1/leads/{lead_id}", headers=stack.auth)
        assert lead.status_code == 200, lead.text
        assert lead.json()["do_not_contact"] is True

        # Later: a new run resumes the history, records the message and stays silent.
        await _say(stack, fake_waha, "Eigenlijk nog een vraag over de Golf")

        async def recorded() -> dict[str, Any] | None:
            r = await stack.http.get(url, headers=stack.auth)
            body: dict[str, Any] = r.json()
            texts = [m["text"] for m in body["transcript"]]
            return body if "Eigenlijk nog een vraag over de Golf" in texts else None

        detail = await stack.wait_for(recorded, what="the later message recorded")
        await stack.wait_for(closed, what="closed again")
        assert [m["role"] for m in detail["transcript"]] == ["lead", "ai", "lead", "ai", "lead"]
        handle = temporal_client.get_workflow_handle(conv_id)
        await handle.result()  # the new run ended by itself
        assert len(_replies(fake_waha)) == 2, "nothing more was sent"
        refused = await stack.http.post(
            f"{url}/messages", headers=stack.auth, json={"text": "Nog een aanbieding!"}
        )
        assert refused.status_code == 404  # no run: a lead's message starts one, silently
