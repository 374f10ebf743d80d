"""POST /webhooks/waha/{tenant} against the real app, database and Temporal dev server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from temporalio.client import Client

from models.conversation import conversation_workflow_id
from models.tenant import TenantSettings, WahaSettings
from tests.api.webhooks.conftest import Harness, payload, waha_sign

SECRET = "waha-hmac-key"
LEAD = "11111111111@c.us"


def signed_tenant() -> TenantSettings:
    return TenantSettings(waha=WahaSettings(webhook_secret=SECRET))


async def test_lead_message_starts_conversation_with_inbound_signal(harness: Harness) -> None:
    tenant, _ = await harness.tenant(signed_tenant())
    body = payload("waha_envelope_message.json")

    resp = await harness.http.post(
        f"/webhooks/waha/{tenant}",
        content=body,
        headers={"content-type": "application/json", **waha_sign(SECRET, body)},
    )

    assert resp.status_code == 202, resp.text
    wid = conversation_workflow_id(tenant, "waha", LEAD)
    assert resp.json()["status"] == "accepted"
    assert resp.json()["delivered"][0]["workflow_id"] == wid
    started = await harness.started_input(wid)
    assert started["tenant_id"] == tenant
    assert started["channel"] == "waha"
    assert started["contact"] == LEAD
    assert started["contact_name"] == "Jane Lead"
    assert started["debounce_seconds"] == 0.3  # from Settings, not the model default
    ((name, (msg,)),) = await harness.signals(wid)
    assert name == "inbound"
    # WAHA's stable key `{fromMe}_{id}`: the same for the @c.us and @lid copies of a message.
    assert msg["provider_message_id"] == "false_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    assert msg["text"] == "Hi there!"
    assert msg["role"] == "lead"
    assert msg["sent_at"].startswith("2022-11-04T11:31:25")
    desc = await harness.temporal.get_workflow_handle(wid).describe()
    attrs = {k.name: v for k, v in desc.typed_search_attributes}
    assert attrs["LeadflowTenant"] == tenant
    assert attrs["LeadflowChannel"] == "waha"
    assert attrs["LeadflowStage"] == "awaiting_response"


async def test_docs_reply_sample_unsigned_tenant_accepted(harness: Harness) -> None:
    tenant, _ = await harness.tenant()  # no webhook_secret: signatures are not required
    resp = await harness.http.post(f"/webhooks/waha/{tenant}", content=payload("waha_message.json"))
    assert resp.status_code == 202, resp.text
    ((_, (msg,)),) = await harness.signals(conversation_workflow_id(tenant, "waha", LEAD))
    assert msg["text"] == "Yes!"


async def test_media_message_carries_url(harness: Harness) -> None:
    tenant, _ = await harness.tenant()
    resp = await harness.http.post(f"/webhooks/waha/{tenant}", content=payload("waha_media.json"))
    assert resp.status_code == 202, resp.text
    ((_, (msg,)),) = await harness.signals(conversation_workflow_id(tenant, "waha", LEAD))
    assert msg["text"] == "[image/jpeg]"
    assert msg["media_urls"] == [
        "http://localhost:3000/api/files/true_11111111111@c.us_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.jpg"
    ]


async def test_redelivery_is_signalled_once(harness: Harness) -> None:
    tenant, _ = await harness.tenant(signed_tenant())
    body = payload("waha_envelope_message.json")
    headers = waha_sign(SECRET, body)
    first = await harness.http.post(f"/webhooks/waha/{tenant}", content=body, headers=headers)
    second = await harness.http.post(f"/webhooks/waha/{tenant}", content=body, headers=headers)
    assert first.status_code == 202
    assert first.json()["delivered"][0]["started"] is True
    # The inbox has seen its key: acknowledged, delivered nowhere.
    assert second.status_code == 200
    assert second.json()["status"] == "ignored"
    assert second.json()["ignored"] == [
        "waha message false_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA from 11111111111@c.us: duplicate of "
        "false_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA already received for "
        + conversation_workflow_id(tenant, "waha", LEAD)
    ]
    signals = await harness.signals(conversation_workflow_id(tenant, "waha", LEAD))
    assert len(signals) == 1


async def test_bad_signature_is_401_and_starts_nothing(harness: Harness) -> None:
    tenant, _ = await harness.tenant(signed_tenant())
    body = payload("waha_envelope_message.json")
    headers = waha_sign("another-key", body)
    resp = await harness.http.post(f"/webhooks/waha/{tenant}", content=body, headers=headers)
    assert resp.status_code == 401
    assert resp.json() == {
        "error": "invalid signature",
        "detail": "X-Webhook-Hmac does not match the body",
    }
    await harness.assert_not_started(conversation_workflow_id(tenant, "waha", LEAD))


async def test_signature_of_other_body_is_401(harness: Harness) -> None:
    tenant, _ = await harness.tenant(signed_tenant())
    body = payload("waha_envelope_message.json")
    headers = waha_sign(SECRET, body.replace(b"Hi there!", b"Hi there?"))
    resp = await harness.http.post(f"/webhooks/waha/{tenant}", content=body, headers=headers)
    assert resp.status_code == 401
    await harness.assert_no_conversation(tenant)


async def test_missing_signature_is_401(harness: Harness) -> None:
    tenant, _ = await harness.tenant(signed_tenant())
    resp = await harness.http.post(
        f"/webhooks/waha/{tenant}", content=payload("waha_envelope_message.json")
    )
    assert resp.status_code == 401
    assert resp.json()["error"] == "missing signature"
    assert "X-Webhook-Hmac" in resp.json()["detail"]
    await harness.assert_no_conversation(tenant)


async def test_wrong_algorithm_is_401(harness: Harness) -> None:
    tenant, _ = await harness.tenant(signed_tenant())
    body = payload("waha_envelope_message.json")
    headers = {**waha_sign(SECRET, body), "X-Webhook-Hmac-Algorithm": "md5"}
    resp = await harness.http.post(f"/webhooks/waha/{tenant}", content=body, headers=headers)
    assert resp.status_code == 401
    assert resp.json()["error"] == "unsupported signature algorithm"
    await harness.assert_no_conversation(tenant)


async def test_own_message_ack_and_group_are_ignored(harness: Harness) -> None:
    tenant, _ = await harness.tenant()
    expectations = {
        "waha_own_message.json": "our own outgoing message (fromMe)",
        "waha_ack.json": "delivery/read receipt",
        "waha_group_message.json": "group chats are disabled",
    }
    for name, reason in expectations.items():
        resp = await harness.http.post(f"/webhooks/waha/{tenant}", content=payload(name))
        assert resp.status_code == 200, name
        assert resp.json()["status"] == "ignored"
        assert resp.json()["delivered"] == []
        assert reason in resp.json()["ignored"][0], name
    await harness.assert_no_conversation(tenant)


async def test_group_message_delivered_when_enabled(harness: Harness) -> None:
    tenant, _ = await harness.tenant(TenantSettings(group_chats_enabled=True))
    resp = await harness.http.post(
        f"/webhooks/waha/{tenant}", content=payload("waha_group_message.json")
    )
    assert resp.status_code == 202, resp.text
    wid = conversation_workflow_id(tenant, "waha", "12312312123133@g.us")
    ((_, (msg,)),) = await harness.signals(wid)
    assert msg["text"] == "Anyone selling a car?"


async def test_session_event_is_ignored(harness: Harness) -> None:
    tenant, _ = await harness.tenant()
    body = json.dumps({"event": "session.status", "session": "default", "payload": {}})
    resp = await harness.http.post(f"/webhooks/waha/{tenant}", content=body)
    assert resp.status_code == 200
    assert resp.json()["ignored"] == ["WAHA event 'session.status' is not a lead's message"]
    await harness.assert_no_conversation(tenant)


async def test_malformed_bodies_are_422(harness: Harness) -> None:
    tenant, _ = await harness.tenant()
    resp = await harness.http.post(f"/webhooks/waha/{tenant}", content=b"{not json")
    assert resp.status_code == 422
    assert resp.json()["error"].startswith("the body is not valid JSON")

    resp = await harness.http.post(f"/webhooks/waha/{tenant}", content=b'{"session": "default"}')
    assert resp.status_code == 422
    assert resp.json()["error"] == "malformed WAHA webhook: event: Field required"

    no_from = json.loads(payload("waha_message.json"))
    del no_from["payload"]["from"]
    resp = await harness.http.post(f"/webhooks/waha/{tenant}", content=json.dumps(no_from))
    assert resp.status_code == 422
    assert resp.json()["detail"] == ["from: Field required"]
    await harness.assert_no_conversation(tenant)


async def test_oversized_body_is_413(harness: Harness) -> None:
    tenant, _ = await harness.tenant()
    big = json.loads(payload("waha_message.json"))
    big["payload"]["body"] = "x" * 70_000  # the harness limit is 64 000 bytes
    resp = await harness.http.post(f"/webhooks/waha/{tenant}", content=json.dumps(big))
    assert resp.status_code == 413
    assert resp.json()["error"] == "payload too large"
    await harness.assert_no_conversation(tenant)


async def test_oversized_chunked_body_is_413(harness: Harness) -> None:
    tenant, _ = await harness.tenant()

    async def chunks() -> AsyncIterator[
        bytes
    ]:  # no Content-Length: the stream itself must be capped
        for _ in range(10):
            yield b"x" * 10_000

    resp = await harness.http.post(f"/webhooks/waha/{tenant}", content=chunks())
    assert resp.status_code == 413
    assert "exceeds 64000 bytes" in resp.json()["detail"]


async def test_unknown_tenant_is_404(harness: Harness) -> None:
    resp = await harness.http.post(
        "/webhooks/waha/no-such-tenant", content=payload("waha_message.json")
    )
    assert resp.status_code == 404
    assert resp.json() == {"error": "unknown tenant", "detail": "no-such-tenant"}
    await harness.assert_not_started(conversation_workflow_id("no-such-tenant", "waha", LEAD))


async def test_temporal_refusing_is_503_so_the_provider_retries(harness: Harness) -> None:
    tenant, _ = await harness.tenant()
    refusing = await Client.connect(
        harness.temporal.service_client.config.target_host,
        namespace="no-such-namespace",
        data_converter=harness.temporal.data_converter,
    )
    harness.app.state.leadflow.temporal = refusing
    resp = await harness.http.post(f"/webhooks/waha/{tenant}", content=payload("waha_message.json"))
    assert resp.status_code == 503
    assert resp.json()["error"] == "Temporal refused the delivery; retry later"
    assert "no-such-namespace" in resp.json()["detail"]
