"""Every webhook route answers bad bodies with a 4xx in the `{"error","detail"}` shape, never a
500, and stores nothing: JSON nested 1000 deep, invalid UTF-8, a JSON Content-Type missing or
wrong, an empty body, a bare JSON scalar.

The routes come from the app's OpenAPI document, so a new webhook is covered as soon as it is
mounted (the test fails until it gets a signer below). Every request is correctly signed or
authenticated: the refusal is about the body, not about who sent it.

The inbound-mail providers that post forms (Mailgun, SendGrid) get form-shaped bad bodies
instead (a JSON body is a 415 for them); Mailgun signs inside the form, so its signature is
added to each body that is a form at all. A payload that is not the provider's is answered
with the provider's own "do not send this again" code: 406 for Mailgun, 403 for Postmark."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlmodel import select

from api.webhooks.hubspot import signature_v3
from api.webhooks.parsers import MAX_JSON_DEPTH, json_depth_exceeds, load_json
from models.crm import CrmKind
from models.inbox_tables import InboxMessage
from models.repo import crm as crm_repo
from models.tables import Message
from models.tenant import (
    ChatwootSettings,
    InboundEmailSettings,
    MetaSettings,
    TenantSettings,
    WahaSettings,
)
from models.webhooks import WebhookPayloadError
from tests.api.webhooks.conftest import Harness, chatwoot_sign, meta_sign, waha_sign
from tests.api.webhooks.test_gohighlevel import CREDENTIALS as GHL_CREDENTIALS
from tests.api.webhooks.test_gohighlevel import ED_KEY as GHL_KEY
from tests.api.webhooks.test_inbound_mail import mailgun_sign
from tests.conftest import TEST_SECRET

pytestmark = pytest.mark.timeout(120)

WAHA_SECRET = "waha-secret"
META_SECRET = "meta-app-secret"
CHATWOOT_SECRET = "chatwoot-secret"
HUBSPOT_SECRET = "hubspot-client-secret"
PIPEDRIVE_USER, PIPEDRIVE_PASSWORD = "pd-user", "pd-password"
MAILGUN_KEY = "mailgun-signing-key"
INBOUND_PASSWORD = "inbound-parse-password"

FORM_PROVIDERS = frozenset({"mailgun", "sendgrid"})
"""Providers whose webhook posts a form, not JSON."""
MALFORMED_STATUS = {"mailgun": 406, "postmark": 403}
"""The answer to a payload that is not the provider's, where it is not 422."""

DEEP = b"[" * 1000 + b"]" * 1000
NOT_UTF8 = b'{"text": "caf\xe9 \xff\xfe"}'  # Latin-1 bytes, as a misconfigured client sends


@dataclass
class Target:
    tenant: str
    api_key: str

    def headers(self, route: str, path: str, body: bytes) -> dict[str, str]:
        """The credentials each provider sends, correct for `body` (Content-Type not included)."""
        provider = route.removeprefix("/webhooks/").split("/", 1)[0]
        if provider == "waha":
            return waha_sign(WAHA_SECRET, body)
        if provider in ("whatsapp", "messenger"):
            return meta_sign(META_SECRET, body)
        if provider == "chatwoot":
            return chatwoot_sign(CHATWOOT_SECRET, body)
        if provider == "email":
            return {"Authorization": f"Bearer {self.api_key}"}
        if provider == "hubspot":
            ts = str(int(time.time() * 1000))
            uri = f"http://leadflow.test{path}"
            return {
                "X-HubSpot-Signature-v3": signature_v3(HUBSPOT_SECRET, "POST", uri, body, ts),
                "X-HubSpot-Request-Timestamp": ts,
            }
        if provider == "pipedrive":
            basic = base64.b64encode(f"{PIPEDRIVE_USER}:{PIPEDRIVE_PASSWORD}".encode()).decode()
            return {"Authorization": f"Basic {basic}"}
        if provider == "gohighlevel":
            return {"x-ghl-signature": base64.b64encode(GHL_KEY.sign(body)).decode()}
        if provider in ("sendgrid", "postmark"):
            basic = base64.b64encode(f"inbound:{INBOUND_PASSWORD}".encode()).decode()
            return {"Authorization": f"Basic {basic}"}
        if provider == "mailgun":
            return {}  # signed inside the form: see `form`
        raise AssertionError(f"new webhook route {route}: teach this test how to sign for it")

    def form(self, route: str, fields: dict[str, str]) -> dict[str, str]:
        """A form's fields with the provider's signature fields added (Mailgun's are in it)."""
        return mailgun_sign(MAILGUN_KEY, fields) if provider_of(route) == "mailgun" else fields


def provider_of(route: str) -> str:
    return route.removeprefix("/webhooks/").split("/", 1)[0]


def expected_status(route: str, status: int) -> int:
    return MALFORMED_STATUS.get(provider_of(route), 422) if status == 422 else status


def webhook_routes(harness: Harness) -> list[str]:
    """Every POST under /webhooks/, from the app's OpenAPI document (its public route table)."""
    paths: dict[str, dict[str, Any]] = harness.app.openapi()["paths"]
    routes = [
        path for path, ops in paths.items() if path.startswith("/webhooks/") and "post" in ops
    ]
    assert len(routes) >= 8, routes  # waha, whatsapp, messenger, chatwoot, email, 3 CRMs
    return sorted(routes)


async def signed_tenant(harness: Harness) -> Target:
    """A tenant with a secret on every channel and every CRM webhook configured."""
    settings = TenantSettings(
        waha=WahaSettings(webhook_secret=WAHA_SECRET),
        whatsapp=MetaSettings(app_secret=META_SECRET),
        messenger=MetaSettings(app_secret=META_SECRET),
        chatwoot=ChatwootSettings(webhook_secret=CHATWOOT_SECRET),
        inbound_email=InboundEmailSettings(
            mailgun_signing_key=MAILGUN_KEY, basic_auth_password=INBOUND_PASSWORD
        ),
    )
    tenant, key = await harness.tenant(settings)
    async with harness.db.session() as session:
        for kind, credentials in (
            (CrmKind.HUBSPOT, {"client_secret": HUBSPOT_SECRET}),
            (
                CrmKind.PIPEDRIVE,
                {"webhook_user": PIPEDRIVE_USER, "webhook_password": PIPEDRIVE_PASSWORD},
            ),
            (CrmKind.GOHIGHLEVEL, GHL_CREDENTIALS),
        ):
            await crm_repo.create_integration(
                session,
                tenant_id=tenant,
                kind=kind,
                name=kind.value,
                credentials=credentials,
                secret_key=TEST_SECRET,
            )
    return Target(tenant=tenant, api_key=key)


async def assert_nothing_stored(harness: Harness, tenant: str) -> None:
    async with harness.db.session() as session:
        inbox = (await session.exec(select(InboxMessage))).all()
        messages = (await session.exec(select(Message))).all()
    assert inbox == []
    assert messages == []
    await harness.assert_no_conversation(tenant)


# (name, body, Content-Type or None for none, expected status)
BAD_BODIES: list[tuple[str, bytes, str | None, int]] = [
    ("JSON nested 1000 deep", DEEP, "application/json", 422),
    ("invalid UTF-8", NOT_UTF8, "application/json", 422),
    ("wrong Content-Type (text/plain)", b"{}", "text/plain", 415),
    ("form Content-Type", b"{}", "application/x-www-form-urlencoded", 415),
    ("JSON with a non-UTF-8 charset", b"{}", "application/json; charset=iso-8859-1", 415),
    ("empty body", b"", "application/json", 422),
    ("JSON scalar", b"42", "application/json", 422),
    ("JSON string", b'"hello"', "application/json", 422),
    ("truncated JSON", b'{"event": ', "application/json", 422),
]


@pytest.mark.parametrize(
    ("name", "body", "content_type", "expected"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES]
)
async def test_every_webhook_refuses_a_bad_body_with_a_4xx_and_stores_nothing(
    harness: Harness, name: str, body: bytes, content_type: str | None, expected: int
) -> None:
    target = await signed_tenant(harness)
    answers: dict[str, tuple[int, Any]] = {}
    for route in webhook_routes(harness):
        if provider_of(route) in FORM_PROVIDERS:
            continue  # form bodies: test_every_form_webhook_refuses_a_bad_form
        path = route.replace("{tenant}", target.tenant)
        headers = target.headers(route, path, body)
        if content_type is not None:
            headers["Content-Type"] = content_type
        response = await harness.http.post(path, content=body, headers=headers)
        answers[route] = (response.status_code, response.json())
    wrong = {
        route: answer
        for route, answer in answers.items()
        if answer[0] != expected_status(route, expected) or set(answer[1]) != {"error", "detail"}
    }
    assert wrong == {}, f"{name}: expected {expected} everywhere; got {answers}"
    await assert_nothing_stored(harness, target.tenant)


async def test_the_same_signed_requests_with_a_json_body_pass_authentication(
    harness: Harness,
) -> None:
    """The control: the signatures above are right, so each refusal was about the body."""
    target = await signed_tenant(harness)
    for route in webhook_routes(harness):
        path = route.replace("{tenant}", target.tenant)
        malformed = expected_status(route, 422)
        if provider_of(route) in FORM_PROVIDERS:
            body = urlencode(target.form(route, {"note": "no mail"})).encode()
            headers = target.headers(route, path, body) | {"Content-Type": FORM_TYPE}
            response = await harness.http.post(path, content=body, headers=headers)
            assert response.status_code == malformed, (route, response.text)
            continue
        for content_type in ("application/json", "application/json; charset=UTF-8", None):
            body = b"{}"
            headers = target.headers(route, path, body)
            if content_type is not None:
                headers["Content-Type"] = content_type
            response = await harness.http.post(path, content=body, headers=headers)
            # `{}` is no provider's event: ignored (200) or refused as not the payload
            assert response.status_code in (200, malformed), (route, content_type, response.text)
            if response.status_code == malformed:
                assert set(response.json()) == {"error", "detail"}
    await assert_nothing_stored(harness, target.tenant)


FORM_TYPE = "application/x-www-form-urlencoded"
CUT_MULTIPART = b'--xYzZY\r\nContent-Disposition: form-data; name="from"\r\n\r\na@b.example\r\n'

# (name, body or None for "a signed form without the mail", Content-Type or None, status)
FORM_BAD_BODIES: list[tuple[str, bytes | None, str | None, int]] = [
    ("JSON body", b'{"from": "a@b.example"}', "application/json", 415),
    ("text/plain", b"from=a@b.example", "text/plain", 415),
    ("no Content-Type", b"from=a@b.example", None, 415),
    ("empty form", b"", FORM_TYPE, 422),
    ("multipart without a boundary", b"--x\r\n\r\n--x--", "multipart/form-data", 422),
    ("multipart cut short", CUT_MULTIPART, "multipart/form-data; boundary=xYzZY", 422),
    ("multipart garbage", b"\xff\xfe\x00garbage", "multipart/form-data; boundary=xYzZY", 422),
    ("a signed form without the mail", None, FORM_TYPE, 422),
]


@pytest.mark.parametrize(
    ("name", "body", "content_type", "expected"),
    FORM_BAD_BODIES,
    ids=[b[0] for b in FORM_BAD_BODIES],
)
async def test_every_form_webhook_refuses_a_bad_form(
    harness: Harness, name: str, body: bytes | None, content_type: str | None, expected: int
) -> None:
    target = await signed_tenant(harness)
    answers: dict[str, tuple[int, Any]] = {}
    for route in webhook_routes(harness):
        if provider_of(route) not in FORM_PROVIDERS:
            continue
        path = route.replace("{tenant}", target.tenant)
        sent = body if body is not None else urlencode(target.form(route, {"x": "1"})).encode()
        headers = target.headers(route, path, sent)
        if content_type is not None:
            headers["Content-Type"] = content_type
        response = await harness.http.post(path, content=sent, headers=headers)
        answers[route] = (response.status_code, response.json())
    assert len(answers) == len(FORM_PROVIDERS), answers
    wrong = {
        route: answer
        for route, answer in answers.items()
        if answer[0] != expected_status(route, expected) or set(answer[1]) != {"error", "detail"}
    }
    assert wrong == {}, f"{name}: expected {expected} (or the provider's code); got {answers}"
    await assert_nothing_stored(harness, target.tenant)


def test_the_depth_scanner_counts_only_brackets_outside_strings() -> None:
    assert not json_depth_exceeds(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)
    assert json_depth_exceeds(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1))
    # brackets in strings, escaped quotes included, are text
    text = b'{"a": "' + b"[{" * 200 + b'\\"[[[", "b": [1, {"c": "]]]}"}]}'
    assert not json_depth_exceeds(text)
    assert load_json(text)["b"][1]["c"] == "]]]}"
    # many brackets side by side are not deep
    wide = b"[" + b",".join([b"[]"] * 500) + b"]"
    assert not json_depth_exceeds(wide)
    assert len(load_json(wide)) == 500


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (DEEP, f"nested more than {MAX_JSON_DEPTH} levels"),
        (b'{"a": ' * 5000 + b"1" + b"}" * 5000, f"nested more than {MAX_JSON_DEPTH} levels"),
        (NOT_UTF8, "not UTF-8"),
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"{", "not valid JSON"),
        (b"[1, 2,]", "not valid JSON"),
    ],
)
def test_load_json_names_the_problem(body: bytes, says: str) -> None:
    with pytest.raises(WebhookPayloadError) as info:
        load_json(body)
    assert says in info.value.message


def test_load_json_takes_multibyte_utf8() -> None:
    assert load_json('{"name": "Zoë 🙂"}'.encode()) == {"name": "Zoë 🙂"}
