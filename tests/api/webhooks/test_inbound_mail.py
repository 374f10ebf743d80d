"""The inbound-parse webhooks of Mailgun, SendGrid and Postmark, on the wire samples
(../shared/wire/inbound_email.md §b), through the real app and the real Temporal dev server:
authentication (Mailgun's HMAC with stale and replayed tokens refused, basic auth for the other
two), each provider's status codes for bad input, and nothing started on bad input."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from pydantic import SecretStr
from sqlmodel import select

from api.errors import ApiError
from api.webhooks.mailgun import SeenTokens, verify_mailgun
from models.conversation import conversation_workflow_id
from models.email_in.service import record_sent
from models.tables import Lead
from models.tenant import InboundEmailSettings, TenantSettings
from tests.api.webhooks.conftest import Harness, payload, payload_json

MAILGUN_KEY = "key-mailgun-signing"
PASSWORD = "inbound-parse-password"
FORM = "application/x-www-form-urlencoded"
MAIL = Path(__file__).parents[2] / "models" / "email_in" / "mail"


def mailgun_sign(
    key: str, fields: dict[str, str], *, timestamp: int | None = None, token: str | None = None
) -> dict[str, str]:
    """`fields` with Mailgun's flat timestamp/token/signature (HMAC-SHA256 of timestamp+token)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    tok = token or uuid.uuid4().hex
    digest = hmac.new(key.encode(), f"{ts}{tok}".encode(), hashlib.sha256).hexdigest()
    return {**fields, "timestamp": ts, "token": tok, "signature": digest}


def mailgun_sample() -> dict[str, str]:
    """anymail's Mailgun route post (the wire doc's sample), `message-headers` as the JSON
    string Mailgun sends."""
    sample = payload_json("mailgun_inbound.json")
    sample["message-headers"] = json.dumps(sample["message-headers"])
    return {k: v for k, v in sample.items() if k not in ("timestamp", "token")}


def basic(password: str = PASSWORD, user: str = "postmark") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def multipart(fields: dict[str, str], boundary: str = "xYzZY") -> tuple[bytes, dict[str, str]]:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    body = ("".join(parts) + f"--{boundary}--\r\n").encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def sendgrid_sample() -> tuple[bytes, dict[str, str]]:
    """SendGrid's own sample body (default_data.txt), with the CRLF line ends of a real post."""
    body = payload("sendgrid_inbound.txt").replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return body, {"Content-Type": "multipart/form-data; boundary=xYzZY"}


async def mail_tenant(harness: Harness, **settings: Any) -> str:
    inbound = InboundEmailSettings(mailgun_signing_key=MAILGUN_KEY, basic_auth_password=PASSWORD)
    tenant, _ = await harness.tenant(
        TenantSettings(inbound_email=inbound, allow_unsigned_webhooks=False, **settings)
    )
    return tenant


async def _inbound(harness: Harness, tenant: str, contact: str) -> dict[str, Any]:
    wid = conversation_workflow_id(tenant, "email", contact)
    ((name, (message,)),) = await harness.signals(wid)
    assert name == "inbound"
    return message  # type: ignore[no-any-return]


# ---- Mailgun --------------------------------------------------------------------------------


async def test_mailgun_parsed_post_is_delivered(harness: Harness) -> None:
    tenant = await mail_tenant(harness)
    body = urlencode(mailgun_sign(MAILGUN_KEY, mailgun_sample()))
    resp = await harness.http.post(
        f"/webhooks/mailgun/{tenant}", content=body, headers={"Content-Type": FORM}
    )
    assert resp.status_code == 202, resp.text
    message = await _inbound(harness, tenant, "from+test@example.org")
    assert message["text"] == "Test body plain"  # body-plain, stripped by leadflow
    assert message["provider_message_id"] == "<CAEPk3R+4Zr@mail.example.org>"
    assert message["thread"] == "<CAEPk3R+4Zr@mail.example.org>"
    assert message["contact_name"] == "Displayed From"
    assert message["sent_at"] == "2017-10-11T18:31:04-07:00"


async def test_mailgun_raw_mime_is_read_whole_and_stripped(harness: Harness) -> None:
    tenant = await mail_tenant(harness)
    fields = {"body-mime": (MAIL / "dutch.eml").read_text(), "recipient": "x@inbound.example"}
    body, headers = multipart(mailgun_sign(MAILGUN_KEY, fields))
    resp = await harness.http.post(f"/webhooks/mailgun/{tenant}", content=body, headers=headers)
    assert resp.status_code == 202, resp.text
    message = await _inbound(harness, tenant, "walter.white@googlemail.com")
    assert message["text"] == "Dit is een antwoord in het Nederlands."


async def test_mailgun_signature_stale_and_replayed_posts_are_refused(harness: Harness) -> None:
    tenant = await mail_tenant(harness)
    url = f"/webhooks/mailgun/{tenant}"

    async def post(fields: dict[str, str]) -> tuple[int, str]:
        resp = await harness.http.post(
            url, content=urlencode(fields), headers={"Content-Type": FORM}
        )
        return resp.status_code, resp.json().get("error", resp.json().get("status"))

    assert await post(mailgun_sample()) == (401, "missing signature")
    assert await post(mailgun_sign("another-key", mailgun_sample())) == (401, "invalid signature")
    old = int(time.time()) - 3600
    assert await post(mailgun_sign(MAILGUN_KEY, mailgun_sample(), timestamp=old)) == (
        401,
        "stale signature",
    )
    assert await post({**mailgun_sign(MAILGUN_KEY, mailgun_sample()), "timestamp": "soon"}) == (
        401,
        "invalid signature timestamp",
    )
    await harness.assert_no_conversation(tenant)
    signed = mailgun_sign(MAILGUN_KEY, mailgun_sample())
    assert await post(signed) == (202, "accepted")
    assert await post(signed) == (401, "replayed signature")  # a captured post sent again
    assert (
        len(
            await harness.signals(
                conversation_workflow_id(tenant, "email", "from+test@example.org")
            )
        )
        == 1
    )


async def test_mailgun_bad_input_is_rejected_with_406_or_its_own_4xx(harness: Harness) -> None:
    tenant = await mail_tenant(harness)
    url = f"/webhooks/mailgun/{tenant}"
    no_body = {k: v for k, v in mailgun_sample().items() if k not in ("body-plain", "body-html")}
    resp = await harness.http.post(
        url, content=urlencode(mailgun_sign(MAILGUN_KEY, no_body)), headers={"Content-Type": FORM}
    )
    assert resp.status_code == 406  # Mailgun does not retry a 406
    assert resp.json()["detail"] == ["body-plain or body-html: field required"]
    bad_headers = {**mailgun_sample(), "message-headers": '{"From": "x"}'}
    resp = await harness.http.post(
        url,
        content=urlencode(mailgun_sign(MAILGUN_KEY, bad_headers)),
        headers={"Content-Type": FORM},
    )
    assert resp.status_code == 406
    assert "message-headers" in resp.json()["detail"][0]
    garbage = {"body-mime": "\x00 not a mail"}
    body, headers = multipart(mailgun_sign(MAILGUN_KEY, garbage))
    resp = await harness.http.post(url, content=body, headers=headers)
    assert resp.status_code == 406
    assert resp.json()["detail"] == ["not an e-mail message: no From header"]
    resp = await harness.http.post(
        url, content=b"--xYzZY\r\nbroken", headers={"Content-Type": "multipart/form-data"}
    )
    assert resp.status_code == 406 and resp.json()["detail"] == ["Missing boundary in multipart."]
    resp = await harness.http.post(url, content=b"{}", headers={"Content-Type": "application/json"})
    assert resp.status_code == 415
    huge = urlencode(mailgun_sign(MAILGUN_KEY, {**mailgun_sample(), "body-plain": "a" * 70_000}))
    resp = await harness.http.post(url, content=huge, headers={"Content-Type": FORM})
    assert resp.status_code == 413
    resp = await harness.http.post(
        "/webhooks/mailgun/no-such-tenant",
        content=urlencode(mailgun_sign(MAILGUN_KEY, mailgun_sample())),
        headers={"Content-Type": FORM},
    )
    assert resp.status_code == 404
    await harness.assert_no_conversation(tenant)


async def test_mailgun_without_a_key_needs_allow_unsigned(harness: Harness) -> None:
    strict, _ = await harness.tenant(TenantSettings(allow_unsigned_webhooks=False))
    loose, _ = await harness.tenant(TenantSettings(allow_unsigned_webhooks=True))
    body = urlencode(mailgun_sample())
    resp = await harness.http.post(
        f"/webhooks/mailgun/{strict}", content=body, headers={"Content-Type": FORM}
    )
    assert resp.status_code == 401
    resp = await harness.http.post(
        f"/webhooks/mailgun/{loose}", content=body, headers={"Content-Type": FORM}
    )
    assert resp.status_code == 202


async def test_mailgun_auto_reply_is_acknowledged_and_not_delivered(harness: Harness) -> None:
    tenant = await mail_tenant(harness)
    fields = {"body-mime": (MAIL / "auto_reply.eml").read_text()}
    resp = await harness.http.post(
        f"/webhooks/mailgun/{tenant}",
        content=urlencode(mailgun_sign(MAILGUN_KEY, fields)),
        headers={"Content-Type": FORM},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["ignored"] == [
        "e-mail <10@foo.bar.mail> via mailgun: an automatic reply (Auto-Submitted: "
        "auto-generated); not answered"
    ]
    await harness.assert_no_conversation(tenant)


# ---- SendGrid -------------------------------------------------------------------------------


async def test_sendgrid_sample_is_delivered(harness: Harness) -> None:
    tenant = await mail_tenant(harness)
    body, headers = sendgrid_sample()
    resp = await harness.http.post(
        f"/webhooks/sendgrid/{tenant}", content=body, headers={**headers, **basic()}
    )
    assert resp.status_code == 202, resp.text
    message = await _inbound(harness, tenant, "test@example.com")
    assert message["text"] == "Hello Twilio SendGrid!"
    assert message["contact_name"] == "Example User"
    # the sample's headers have no Message-ID: a digest of the mail stands in, stable
    assert message["provider_message_id"].endswith("@leadflow.missing-id>")
    again = await harness.http.post(
        f"/webhooks/sendgrid/{tenant}", content=body, headers={**headers, **basic()}
    )
    assert again.status_code == 200 and "duplicate of" in again.json()["ignored"][0]


async def test_sendgrid_raw_bounce_marks_the_lead(harness: Harness) -> None:
    tenant = await mail_tenant(harness)
    async with harness.db.session() as session:
        session.add(
            Lead(
                id=f"l-{tenant}",
                tenant_id=tenant,
                channel="email",
                address="linux-admin@b-s-c.co.jp",
            )
        )
        await session.commit()
    body, headers = multipart({"email": (MAIL / "bounced_email.eml").read_text(), "to": "x@y.z"})
    resp = await harness.http.post(
        f"/webhooks/sendgrid/{tenant}", content=body, headers={**headers, **basic()}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["ignored"][0].endswith(
        "a hard bounce (5.1.1); 1 lead(s) marked, not answered"
    )
    async with harness.db.session() as session:
        lead = (await session.exec(select(Lead).where(Lead.tenant_id == tenant))).one()
    assert lead.email_bounced_at is not None
    assert lead.email_bounce == '5.1.1 X-Postfix; unknown user: "linux-admin"'
    await harness.assert_no_conversation(tenant)


async def test_sendgrid_auth_and_bad_input(harness: Harness) -> None:
    tenant = await mail_tenant(harness)
    url = f"/webhooks/sendgrid/{tenant}"
    body, headers = sendgrid_sample()
    resp = await harness.http.post(url, content=body, headers=headers)
    assert (resp.status_code, resp.json()["error"]) == (401, "missing credentials")
    resp = await harness.http.post(url, content=body, headers={**headers, **basic("wrong")})
    assert (resp.status_code, resp.json()["error"]) == (401, "invalid credentials")
    resp = await harness.http.post(
        url, content=body, headers={**headers, "Authorization": "Basic %%%"}
    )
    assert resp.status_code == 401
    missing, mheaders = multipart({"subject": "no sender", "text": "hi"})
    resp = await harness.http.post(url, content=missing, headers={**mheaders, **basic()})
    assert resp.status_code == 422  # SendGrid retries only 5xx: a 4xx is final
    assert resp.json()["detail"] == ["headers: field required", "from: field required"]
    truncated = body[: len(body) // 2]
    resp = await harness.http.post(url, content=truncated, headers={**headers, **basic()})
    assert resp.status_code == 422
    assert resp.json()["detail"] == ["the multipart body is cut short (no closing boundary)"]
    resp = await harness.http.post(
        url, content=b"{}", headers={"Content-Type": "application/json", **basic()}
    )
    assert resp.status_code == 415
    huge, hheaders = multipart(
        {"headers": "From: a@b.example", "from": "a@b.example", "text": "a" * 70_000}
    )
    resp = await harness.http.post(url, content=huge, headers={**hheaders, **basic()})
    assert resp.status_code == 413
    await harness.assert_no_conversation(tenant)


# ---- Postmark -------------------------------------------------------------------------------


async def test_postmark_sample_is_delivered_and_its_own_id_only_stands_in(
    harness: Harness,
) -> None:
    tenant = await mail_tenant(harness)
    resp = await harness.http.post(
        f"/webhooks/postmark/{tenant}",
        content=payload("postmark_inbound.json"),
        headers={"Content-Type": "application/json", **basic()},
    )
    assert resp.status_code == 202, resp.text
    message = await _inbound(harness, tenant, "support@postmarkapp.com")
    assert message["text"] == "This is a test text body."
    assert message["contact_name"] == "Postmarkapp Support"
    # Postmark's MessageID is not the mail's: used only because Headers[] has no Message-ID
    assert message["provider_message_id"] == (
        "<00000000-0000-0000-0000-000000000000@inbound.postmarkapp.com>"
    )


async def test_postmark_reply_threads_by_the_headers_message_ids(harness: Harness) -> None:
    tenant = await mail_tenant(harness)
    ours = "<0123456789abcdef0123456789abcdef@dealer.example>"
    async with harness.db.session() as session:
        await record_sent(
            session,
            tenant_id=tenant,
            message_id=ours,
            to="lead@example.org",
            from_address="sales@dealer.example",
            conversation_id=None,
            campaign_id=None,
            sent_at=datetime.now(UTC),
        )
    doc = payload_json("postmark_inbound.json")
    doc["Headers"] = [
        {"Name": "Message-ID", "Value": "<reply-1@postmarkapp.com>"},
        {"Name": "In-Reply-To", "Value": ours},
        {"Name": "References", "Value": ours},
    ]
    doc["TextBody"] = (
        "Yes please, Saturday.\n\nOn Tue, Jun 10, 2025 at 9:00 AM Sales "
        f"<sales@dealer.example> wrote:\n> {ours} offer"
    )
    resp = await harness.http.post(
        f"/webhooks/postmark/{tenant}",
        content=json.dumps(doc),
        headers={"Content-Type": "application/json", **basic()},
    )
    assert resp.status_code == 202, resp.text
    # From support@postmarkapp.com, but it answers our mail to lead@example.org
    message = await _inbound(harness, tenant, "lead@example.org")
    assert message["provider_message_id"] == "<reply-1@postmarkapp.com>"
    assert message["thread"] == "<reply-1@postmarkapp.com>"
    assert message["text"] == "Yes please, Saturday."


async def test_postmark_bad_input_is_403_so_postmark_stops(harness: Harness) -> None:
    tenant = await mail_tenant(harness)
    url = f"/webhooks/postmark/{tenant}"
    json_type = {"Content-Type": "application/json"}
    resp = await harness.http.post(url, content=payload("postmark_inbound.json"), headers=json_type)
    assert (resp.status_code, resp.json()["error"]) == (401, "missing credentials")
    doc = payload_json("postmark_inbound.json")
    del doc["From"]
    resp = await harness.http.post(url, content=json.dumps(doc), headers={**json_type, **basic()})
    assert resp.status_code == 403
    assert resp.json()["detail"] == ["From: Field required"]
    resp = await harness.http.post(url, content=b"{", headers={**json_type, **basic()})
    assert resp.status_code == 403
    resp = await harness.http.post(url, content=b"{}", headers={"Content-Type": FORM, **basic()})
    assert resp.status_code == 415
    huge = {**payload_json("postmark_inbound.json"), "TextBody": "a" * 70_000}
    resp = await harness.http.post(url, content=json.dumps(huge), headers={**json_type, **basic()})
    assert resp.status_code == 413
    await harness.assert_no_conversation(tenant)


def test_mailgun_tokens_are_claimed_released_and_forgotten_after_the_window() -> None:
    seen = SeenTokens(ttl=600)
    clock = [1_000_000.0]
    fields = mailgun_sign(MAILGUN_KEY, {}, timestamp=int(clock[0]), token="tok-1")

    def verify() -> str | None:
        return verify_mailgun(
            SecretStr(MAILGUN_KEY),
            fields,
            tenant_id="t",
            allow_unsigned=False,
            seen=seen,
            now=lambda: clock[0],
        )

    assert verify() == "tok-1"
    with pytest.raises(ApiError, match="replayed signature"):
        verify()  # also while the first copy is still being handled
    seen.release("t", "tok-1")  # the first copy was not taken (a 503): the retry gets through
    assert verify() == "tok-1"
    assert seen.claim("other-tenant", "tok-1", clock[0])  # tokens are per tenant
    clock[0] += 601  # past the window: forgotten (its timestamp is stale by then anyway)
    assert seen.claim("t", "tok-1", clock[0])
