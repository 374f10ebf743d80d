"""WhatsApp Cloud API and Messenger webhooks, including Meta's GET verification handshake."""

from __future__ import annotations

import json

import pytest

from models.conversation import conversation_workflow_id
from models.tenant import MetaSettings, TenantSettings
from tests.api.webhooks.conftest import Harness, meta_sign, payload

APP_SECRET = "meta-app-secret"
VERIFY = "meatyhamhock"
WA_LEAD = "16505551234"
WAMID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="


def meta_tenant() -> TenantSettings:
    meta = MetaSettings(app_secret=APP_SECRET, verify_token=VERIFY)
    return TenantSettings(whatsapp=meta, messenger=meta)


@pytest.mark.parametrize("channel", ["whatsapp", "messenger"])
async def test_verification_handshake(harness: Harness, channel: str) -> None:
    tenant, _ = await harness.tenant(meta_tenant())
    good = {"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": VERIFY}

    resp = await harness.http.get(f"/webhooks/{channel}/{tenant}", params=good)
    assert resp.status_code == 200
    assert resp.text == "1158201444"
    assert resp.headers["content-type"].startswith("text/plain")

    bad = {**good, "hub.verify_token": "wrong"}
    resp = await harness.http.get(f"/webhooks/{channel}/{tenant}", params=bad)
    assert resp.status_code == 403
    assert resp.json()["detail"] == "hub.verify_token does not match"

    resp = await harness.http.get(
        f"/webhooks/{channel}/{tenant}", params={**good, "hub.mode": "unsubscribe"}
    )
    assert resp.status_code == 403

    resp = await harness.http.get(f"/webhooks/{channel}/no-such-tenant", params=good)
    assert resp.status_code == 404


async def test_verification_refused_without_configured_token(harness: Harness) -> None:
    tenant, _ = await harness.tenant()
    resp = await harness.http.get(
        f"/webhooks/whatsapp/{tenant}",
        params={"hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": ""},
    )
    assert resp.status_code == 403
    assert resp.json()["detail"] == "no whatsapp verify_token is configured"


async def test_whatsapp_text_is_delivered(harness: Harness) -> None:
    tenant, _ = await harness.tenant(meta_tenant())
    body = payload("whatsapp_text.json")
    resp = await harness.http.post(
        f"/webhooks/whatsapp/{tenant}", content=body, headers=meta_sign(APP_SECRET, body)
    )
    assert resp.status_code == 202, resp.text
    wid = conversation_workflow_id(tenant, "whatsapp", WA_LEAD)
    started = await harness.started_input(wid)
    assert started["contact_name"] == "Sheena Nelson"
    ((name, (msg,)),) = await harness.signals(wid)
    assert name == "inbound"
    assert msg["provider_message_id"] == WAMID
    assert msg["text"] == "Does it come in another color?"
    assert msg["channel"] == "whatsapp"
    assert msg["sent_at"].startswith("2025-06-08T20:59:43")


async def test_whatsapp_signature_rejected(harness: Harness) -> None:
    tenant, _ = await harness.tenant(meta_tenant())
    body = payload("whatsapp_text.json")
    wid = conversation_workflow_id(tenant, "whatsapp", WA_LEAD)
    cases = {
        "invalid signature": meta_sign("not-the-secret", body),
        "missing signature": {},
    }
    for error, headers in cases.items():
        resp = await harness.http.post(
            f"/webhooks/whatsapp/{tenant}", content=body, headers=headers
        )
        assert resp.status_code == 401
        assert resp.json()["error"] == error
    sha1 = {"X-Hub-Signature-256": "sha1=" + "0" * 40}
    resp = await harness.http.post(f"/webhooks/whatsapp/{tenant}", content=body, headers=sha1)
    assert resp.status_code == 401
    assert resp.json()["detail"] == "X-Hub-Signature-256 must be `sha256=<hex>`"
    await harness.assert_not_started(wid)


async def test_whatsapp_status_is_ignored(harness: Harness) -> None:
    tenant, _ = await harness.tenant(meta_tenant())
    body = payload("whatsapp_status_delivered.json")
    resp = await harness.http.post(
        f"/webhooks/whatsapp/{tenant}", content=body, headers=meta_sign(APP_SECRET, body)
    )
    assert resp.status_code == 200
    assert resp.json() == {
        "status": "ignored",
        "delivered": [],
        "ignored": ["WhatsApp status 'delivered' for wamid.xyzxyz: a receipt, not a message"],
    }
    await harness.assert_no_conversation(tenant)


async def test_whatsapp_malformed(harness: Harness) -> None:
    tenant, _ = await harness.tenant()
    doc = json.loads(payload("whatsapp_text.json"))
    del doc["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
    resp = await harness.http.post(f"/webhooks/whatsapp/{tenant}", content=json.dumps(doc))
    assert resp.status_code == 422
    assert resp.json()["detail"] == ["entry.0.changes.0.value.messages.0.id: Field required"]

    resp = await harness.http.post(
        f"/webhooks/whatsapp/{tenant}", content=payload("messenger_text.json")
    )
    assert resp.status_code == 422
    assert "expected 'whatsapp_business_account'" in resp.json()["error"]
    await harness.assert_no_conversation(tenant)


async def test_whatsapp_oversized_and_unknown_tenant(harness: Harness) -> None:
    tenant, _ = await harness.tenant()
    resp = await harness.http.post(f"/webhooks/whatsapp/{tenant}", content=b" " * 64_001)
    assert resp.status_code == 413
    resp = await harness.http.post(
        "/webhooks/whatsapp/no-such-tenant", content=payload("whatsapp_text.json")
    )
    assert resp.status_code == 404


async def test_messenger_text_is_delivered(harness: Harness) -> None:
    tenant, _ = await harness.tenant(meta_tenant())
    body = payload("messenger_text.json")
    resp = await harness.http.post(
        f"/webhooks/messenger/{tenant}", content=body, headers=meta_sign(APP_SECRET, body)
    )
    assert resp.status_code == 202, resp.text
    ((name, (msg,)),) = await harness.signals(
        conversation_workflow_id(tenant, "messenger", "USER_ID")
    )
    assert name == "inbound"
    assert msg["provider_message_id"] == "mid.1457764197618:41d102a3e1ae206a38"
    assert msg["text"] == "hello, world!"
    assert msg["sent_at"].startswith("2016-03-12T06:29:57.627")


async def test_messenger_echo_and_receipts_are_ignored(harness: Harness) -> None:
    tenant, _ = await harness.tenant(meta_tenant())
    body = payload("messenger_echo_and_receipts.json")
    resp = await harness.http.post(
        f"/webhooks/messenger/{tenant}", content=body, headers=meta_sign(APP_SECRET, body)
    )
    assert resp.status_code == 200
    assert resp.json()["ignored"] == [
        "Messenger message mid.1457764197618:41d102a3e1ae206a38: echo of the Page's own message",
        "Messenger delivery receipt, not a message",
        "Messenger read receipt, not a message",
    ]
    await harness.assert_no_conversation(tenant)


async def test_messenger_bad_signature_and_malformed(harness: Harness) -> None:
    tenant, _ = await harness.tenant(meta_tenant())
    body = payload("messenger_text.json")
    resp = await harness.http.post(
        f"/webhooks/messenger/{tenant}", content=body, headers=meta_sign("nope", body)
    )
    assert resp.status_code == 401
    bad = b'{"object": "page", "entry": [{"id": "1", "messaging": [{"timestamp": 1}]}]}'
    resp = await harness.http.post(
        f"/webhooks/messenger/{tenant}", content=bad, headers=meta_sign(APP_SECRET, bad)
    )
    assert resp.status_code == 422
    assert resp.json()["detail"] == ["entry.0.messaging.0.sender: Field required"]
    await harness.assert_no_conversation(tenant)
