"""End to end: WAHA delivers one WhatsApp message twice, from the phone id (`@c.us`) and from
the hidden-user id (`@lid`), as GOWS/NOWEB do (shared/wire/waha_lids_and_identity.md §5).
The real API, the real worker and the dev server; the fake WAHA answers the lids API and takes
the replies. Outcome: one conversation and one reply, whether WAHA maps the lid or not."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.webhooks.waha_identity import LIDS
from models.conversation import conversation_workflow_id
from models.task_queues import CONVERSATIONS
from models.tenant import TenantSettings
from tests.fakes.waha import FakeWaha
from tests.stack import LiveStack, live_stack

PHONE = "31612345678@c.us"
LID = "176369157804064@lid"


async def post(stack: LiveStack, delivery: tuple[bytes, dict[str, str]]) -> dict[str, Any]:
    raw, headers = delivery
    response = await stack.http.post(
        f"/webhooks/waha/{stack.tenant_id}", content=raw, headers=headers
    )
    assert response.status_code in (200, 202), response.text
    body: dict[str, Any] = response.json()
    return body


def replies(fake: FakeWaha, chat_id: str) -> list[dict[str, Any]]:
    return [body for body in fake.sent if body.get("chatId") == chat_id]


async def transcript(stack: LiveStack, conv_id: str) -> list[dict[str, Any]]:
    response = await stack.http.get(f"/api/v1/conversations/{conv_id}", headers=stack.auth)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["transcript"]
    return entries


async def assert_never_started(client: Client, workflow_id: str) -> None:
    with pytest.raises(RPCError) as info:
        await client.get_workflow_handle(workflow_id).describe()
    assert info.value.status == RPCStatusCode.NOT_FOUND


@pytest.mark.parametrize("mapped", [True, False], ids=["lid-mapped", "lid-unmapped"])
async def test_double_delivery_is_one_conversation_and_one_reply(
    temporal_client: Client,
    settings_factory: Any,
    sqlite_url: str,
    fake_waha: FakeWaha,
    mapped: bool,
) -> None:
    LIDS.clear()
    if mapped:
        fake_waha.map_lid(LID, PHONE)
    settings = settings_factory(sqlite_url, debounce_seconds=0.5)
    tenant = TenantSettings(playbook="car_dealership", waha=fake_waha.settings())
    async with live_stack(
        temporal_client, settings, tenant_settings=tenant, queues=[CONVERSATIONS]
    ) as stack:
        as_phone, as_lid = fake_waha.twin_webhooks(
            phone=PHONE, lid=LID, body="Hi, is the Golf still for sale?", key="3EB0AA11BB22CC33"
        )
        # Mapped: the @lid copy comes first (the harder order: it must find the phone).
        first, second = (as_lid, as_phone) if mapped else (as_phone, as_lid)
        accepted = await post(stack, first)
        dropped = await post(stack, second)

        conv_id = conversation_workflow_id(stack.tenant_id, "waha", PHONE)
        assert accepted["status"] == "accepted"
        assert [d["workflow_id"] for d in accepted["delivered"]] == [conv_id]
        assert dropped["status"] == "ignored" and dropped["delivered"] == []
        assert "duplicate of false_3EB0AA11BB22CC33" in dropped["ignored"][0]
        # WAHA was asked once (unmapped: it answered `pn: null`, the copy keeps its @lid).
        assert len(fake_waha.lid_lookups()) == 1

        await stack.wait_for(lambda: replies(fake_waha, PHONE), what="the reply")
        # A next message, from the lid alone, is answered in the same conversation (mapped by
        # WAHA, or learnt from the twins); by then any second answer to the first message
        # would have been sent (one conversation answers in order).
        follow_up = fake_waha.message_webhook(from_=LID, body="Can I test drive it on Saturday?")
        assert [d["workflow_id"] for d in (await post(stack, follow_up))["delivered"]] == [conv_id]
        await stack.wait_for(lambda: len(replies(fake_waha, PHONE)) >= 2, what="second reply")

        assert len(replies(fake_waha, PHONE)) == 2
        assert replies(fake_waha, LID) == []
        await assert_never_started(
            temporal_client, conversation_workflow_id(stack.tenant_id, "waha", LID)
        )
        entries = await stack.wait_for(
            lambda: _full(stack, conv_id), what="the transcript with both turns"
        )
        assert [(e["role"], e["text"]) for e in entries if e["role"] == "lead"] == [
            ("lead", "Hi, is the Golf still for sale?"),
            ("lead", "Can I test drive it on Saturday?"),
        ]
        assert [e["role"] for e in entries] == ["lead", "ai", "lead", "ai"]


async def _full(stack: LiveStack, conv_id: str) -> list[dict[str, Any]] | None:
    entries = await transcript(stack, conv_id)
    return entries if len(entries) >= 4 else None
