"""POST /webhooks/email/{tenant}: leadflow's own inbound-mail JSON, authenticated by API key."""

from __future__ import annotations

import json

from models.conversation import conversation_workflow_id
from tests.api.webhooks.conftest import Harness, payload, payload_json

LEAD = "jane.doe@example.com"


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_mail_is_delivered(harness: Harness) -> None:
    tenant, key = await harness.tenant()
    resp = await harness.http.post(
        f"/webhooks/email/{tenant}", content=payload("email_message.json"), headers=auth(key)
    )
    assert resp.status_code == 202, resp.text
    wid = conversation_workflow_id(tenant, "email", LEAD)
    started = await harness.started_input(wid)
    # the thread is the lead's Message-ID: leadflow's answer carries In-Reply-To/References
    assert started["thread"] == "<CAF=abc123@mail.example.com>"
    assert started["contact_name"] == "Jane Doe"
    ((name, (msg,)),) = await harness.signals(wid)
    assert name == "inbound"
    assert msg["contact"] == LEAD
    assert msg["provider_message_id"] == "<CAF=abc123@mail.example.com>"
    assert msg["text"].startswith("Hi, is the blue SUV still available?")
    assert msg["sent_at"] == "2025-06-10T09:15:00+02:00"


async def test_redelivered_mail_is_signalled_once(harness: Harness) -> None:
    tenant, key = await harness.tenant()
    answers = []
    for _ in range(3):
        resp = await harness.http.post(
            f"/webhooks/email/{tenant}", content=payload("email_message.json"), headers=auth(key)
        )
        answers.append((resp.status_code, resp.json()["status"]))
        if resp.status_code == 200:  # the inbox knew its Message-ID: delivered nowhere
            (reason,) = resp.json()["ignored"]
            assert "duplicate of <CAF=abc123@mail.example.com>" in reason
    assert answers == [(202, "accepted"), (200, "ignored"), (200, "ignored")]
    assert len(await harness.signals(conversation_workflow_id(tenant, "email", LEAD))) == 1


async def test_api_key_required_and_must_be_the_tenants(harness: Harness) -> None:
    tenant, _ = await harness.tenant()
    _, other_key = await harness.tenant()
    body = payload("email_message.json")
    resp = await harness.http.post(f"/webhooks/email/{tenant}", content=body)
    assert resp.status_code == 401
    assert resp.json()["error"] == "missing API key"
    resp = await harness.http.post(
        f"/webhooks/email/{tenant}", content=body, headers=auth(other_key)
    )
    assert resp.status_code == 401
    assert resp.json()["error"] == "invalid API key"
    await harness.assert_no_conversation(tenant)


async def test_malformed_mail_is_422(harness: Harness) -> None:
    tenant, key = await harness.tenant()
    url = f"/webhooks/email/{tenant}"
    base = payload_json("email_message.json")
    cases = {
        "text: Field required": {k: v for k, v in base.items() if k != "text"},
        "from: 'undisclosed-recipients' has no valid e-mail address": {
            **base,
            "from": "undisclosed-recipients",
        },
        "date: 'last tuesday' is neither ISO 8601 nor an RFC 5322 date": {
            **base,
            "date": "last tuesday",
        },
    }
    for problem, doc in cases.items():
        resp = await harness.http.post(url, content=json.dumps(doc), headers=auth(key))
        assert resp.status_code == 422, problem
        assert resp.json()["detail"] == [problem]
    await harness.assert_no_conversation(tenant)


async def test_empty_mail_is_ignored_oversized_413_unknown_404(harness: Harness) -> None:
    tenant, key = await harness.tenant()
    empty = {**payload_json("email_message.json"), "text": "  \n"}
    resp = await harness.http.post(
        f"/webhooks/email/{tenant}", content=json.dumps(empty), headers=auth(key)
    )
    assert resp.status_code == 200
    assert resp.json()["ignored"] == ["e-mail <CAF=abc123@mail.example.com> via email: empty body"]

    huge = {**payload_json("email_message.json"), "text": "a" * 65_000}
    resp = await harness.http.post(
        f"/webhooks/email/{tenant}", content=json.dumps(huge), headers=auth(key)
    )
    assert resp.status_code == 413

    resp = await harness.http.post(
        "/webhooks/email/no-such-tenant", content=payload("email_message.json"), headers=auth(key)
    )
    assert resp.status_code == 404
    await harness.assert_no_conversation(tenant)
