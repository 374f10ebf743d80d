"""Chatwoot webhooks: lead messages, agent replies (role=human), own echoes, private notes,
conversation resolved (release), contact events, and the timestamped signature."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from models.conversation import conversation_workflow_id
from models.tenant import ChatwootSettings, TenantSettings
from tests.api.webhooks.conftest import Harness, chatwoot_sign, payload, payload_json

SECRET = "chatwoot-webhook-secret"
CONTACT = "14"  # conversation.contact_inbox.contact_id of the docs' message_created sample


def signed_tenant() -> TenantSettings:
    return TenantSettings(chatwoot=ChatwootSettings(webhook_secret=SECRET))


def agent_reply(**changes: Any) -> dict[str, Any]:
    """The docs' message_created sample as an agent's (user's) outgoing reply."""
    doc = payload_json("chatwoot_message_created.json")
    doc.update(
        id=119,
        content="Yes, we have it in red too.",
        message_type="outgoing",
        sender={"id": 1, "name": "John", "email": "john@acme.inc", "type": "user"},
    )
    doc.update(changes)
    return doc  # type: ignore[no-any-return]


async def post(harness: Harness, tenant: str, body: bytes, secret: str | None = SECRET) -> Any:
    headers = chatwoot_sign(secret, body) if secret else {}
    return await harness.http.post(f"/webhooks/chatwoot/{tenant}", content=body, headers=headers)


async def test_incoming_message_is_delivered(harness: Harness) -> None:
    tenant, _ = await harness.tenant(signed_tenant())
    resp = await post(harness, tenant, payload("chatwoot_message_created.json"))
    assert resp.status_code == 202, resp.text
    wid = conversation_workflow_id(tenant, "chatwoot", CONTACT)
    started = await harness.started_input(wid)
    assert started["thread"] == "10"
    assert started["contact_name"] == "little-haze-776"
    ((name, (msg,)),) = await harness.signals(wid)
    assert name == "inbound"
    assert msg["provider_message_id"] == "118"
    assert msg["text"] == "hi"
    assert msg["role"] == "lead"
    assert msg["thread"] == "10"
    assert msg["sent_at"].startswith("2021-07-23T18:02:48")


async def test_agent_reply_is_delivered_as_human_message(harness: Harness) -> None:
    tenant, _ = await harness.tenant(signed_tenant())
    resp = await post(harness, tenant, json.dumps(agent_reply()).encode())
    assert resp.status_code == 202, resp.text
    ((name, (msg,)),) = await harness.signals(conversation_workflow_id(tenant, "chatwoot", CONTACT))
    assert name == "inbound"
    assert msg["role"] == "human"
    assert msg["text"] == "Yes, we have it in red too."
    assert msg["contact_name"] == "little-haze-776"  # the lead's name, not the agent's


async def test_own_bot_messages_private_notes_and_activity_are_ignored(harness: Harness) -> None:
    tenant, _ = await harness.tenant(signed_tenant())
    cases = {
        "our own outgoing message (sender agent_bot)": agent_reply(
            sender={"id": 3, "name": "leadflow", "type": "agent_bot"}
        ),
        "our own outgoing message (sender none)": agent_reply(sender=None),
        "a private note": agent_reply(private=True),
        "message_type 'activity'": agent_reply(message_type="activity"),
    }
    for reason, doc in cases.items():
        resp = await post(harness, tenant, json.dumps(doc).encode())
        assert resp.status_code == 200, reason
        assert resp.json()["ignored"] == [f"Chatwoot message 119: {reason}"]
    await harness.assert_no_conversation(tenant)


async def test_contact_and_other_events_are_ignored(harness: Harness) -> None:
    tenant, _ = await harness.tenant(signed_tenant())
    contact = {"event": "contact_created", "id": 14, "name": "little-haze-776", "email": None}
    resp = await post(harness, tenant, json.dumps(contact).encode())
    assert resp.status_code == 200
    assert resp.json()["ignored"] == [
        "Chatwoot contact_created: contact events are not handled yet"
    ]
    updated = {**payload_json("chatwoot_message_created.json"), "event": "message_updated"}
    resp = await post(harness, tenant, json.dumps(updated).encode())
    assert resp.status_code == 200
    assert resp.json()["ignored"] == ["Chatwoot event 'message_updated' is not a message"]
    await harness.assert_no_conversation(tenant)


async def test_resolved_conversation_releases_the_lead(harness: Harness) -> None:
    tenant, _ = await harness.tenant(signed_tenant())
    # The status sample's contact is 12: start that lead's conversation first.
    first = agent_reply(message_type="incoming", sender={"id": 12, "type": "contact"})
    first["conversation"]["contact_inbox"]["contact_id"] = 12
    assert (await post(harness, tenant, json.dumps(first).encode())).status_code == 202

    resolved = {**payload_json("chatwoot_conversation_status_changed.json"), "status": "resolved"}
    resp = await post(harness, tenant, json.dumps(resolved).encode())

    assert resp.status_code == 202, resp.text
    wid = conversation_workflow_id(tenant, "chatwoot", "12")
    assert resp.json()["delivered"] == [
        {
            "workflow_id": wid,
            "provider_message_id": None,
            "signal": "release",
            "run_id": None,
            "started": None,
        }
    ]
    signals = await harness.signals(wid)
    assert [name for name, _ in signals] == ["inbound", "release"]
    assert signals[1][1] == [{"by": "chatwoot: conversation 10 resolved"}]


async def test_resolved_without_conversation_and_open_status_are_ignored(harness: Harness) -> None:
    tenant, _ = await harness.tenant(signed_tenant())
    sample = payload_json("chatwoot_conversation_status_changed.json")
    resp = await post(harness, tenant, json.dumps(sample).encode())  # status "open"
    assert resp.status_code == 200
    assert "only 'resolved' releases the lead" in resp.json()["ignored"][0]

    resolved = json.dumps({**sample, "status": "resolved"}).encode()
    resp = await post(harness, tenant, resolved)
    assert resp.status_code == 200
    wid = conversation_workflow_id(tenant, "chatwoot", "12")
    assert resp.json()["ignored"] == [f"no running conversation {wid} to release"]
    await harness.assert_no_conversation(tenant)


async def test_signature_failures_are_401(harness: Harness) -> None:
    tenant, _ = await harness.tenant(signed_tenant())
    body = payload("chatwoot_message_created.json")
    url = f"/webhooks/chatwoot/{tenant}"
    stale = chatwoot_sign(SECRET, body, timestamp=int(time.time()) - 600)
    good = chatwoot_sign(SECRET, body)
    # The signed string is "{timestamp}.{body}": another timestamp breaks it.
    moved = {**good, "X-Chatwoot-Timestamp": str(int(good["X-Chatwoot-Timestamp"]) - 1)}
    # The HMAC of the body alone, without the timestamp, is not Chatwoot's scheme.
    naive = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    body_only = {**good, "X-Chatwoot-Signature": naive}
    cases: list[tuple[dict[str, str], str]] = [
        ({}, "missing signature"),
        ({"X-Chatwoot-Signature": good["X-Chatwoot-Signature"]}, "missing signature timestamp"),
        (chatwoot_sign("wrong", body), "invalid signature"),
        (stale, "stale signature"),
        (moved, "invalid signature"),
        (body_only, "invalid signature"),
        ({**good, "X-Chatwoot-Timestamp": "yesterday"}, "invalid signature timestamp"),
    ]
    for headers, error in cases:
        resp = await harness.http.post(url, content=body, headers=headers)
        assert resp.status_code == 401, (headers, resp.text)
        assert resp.json()["error"] == error
    await harness.assert_no_conversation(tenant)


async def test_malformed_oversized_unknown(harness: Harness) -> None:
    tenant, _ = await harness.tenant()
    no_conversation = payload_json("chatwoot_message_created.json")
    del no_conversation["conversation"]
    resp = await post(harness, tenant, json.dumps(no_conversation).encode(), secret=None)
    assert resp.status_code == 422
    assert (
        resp.json()["error"] == "malformed Chatwoot message_created: conversation: Field required"
    )

    resp = await post(harness, tenant, b'{"id": 1}', secret=None)
    assert resp.status_code == 422
    assert resp.json()["detail"] == ["event: Field required"]

    resp = await post(harness, tenant, b"[" * 64_001, secret=None)
    assert resp.status_code == 413

    resp = await post(harness, "no-such-tenant", payload("chatwoot_message_created.json"))
    assert resp.status_code == 404
    await harness.assert_no_conversation(tenant)
