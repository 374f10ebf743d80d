"""`POST /webhooks/hubspot/{tenant}`: batched HubSpot webhook events, signature v3 checked.

The app secret (`client_secret` in the HubSpot integration's credentials) signs
method + URI + body + timestamp; requests older than five minutes are refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import State, load_tenant
from api.errors import ApiError
from api.webhooks.body import require_json_content_type
from api.webhooks.common import CRM_WEBHOOK_RESPONSES, read_body, webhook_body
from api.webhooks.crm_inbound import (
    InboundReport,
    apply_remote_changes,
    credentials_of,
    forget_remote_record,
    integrations_of_kind,
)
from api.webhooks.parsers import load_json
from models.crm import CrmKind
from models.crm_tables import Integration
from models.webhooks import WebhookPayloadError

router = APIRouter(prefix="/webhooks/hubspot", tags=["webhooks"])

MAX_TIMESTAMP_AGE_MS = 300_000  # "Reject the request if the timestamp is older than 5 minutes."
CONTACT_OBJECT_TYPE = "0-1"


def signature_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    # Over the bytes, not a decoded string: a body that is not UTF-8 must fail the check (or
    # later the JSON loader), not raise UnicodeDecodeError (it was a 500).
    source = method.encode() + uri.encode() + body + timestamp.encode()
    digest = hmac.new(secret.encode(), source, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _request_uri(request: Request, public_url: str | None) -> str:
    """The URL HubSpot called: behind a proxy that is the public URL, not the one we see."""
    if public_url:
        uri = public_url.rstrip("/") + request.url.path
        return f"{uri}?{request.url.query}" if request.url.query else uri
    return str(request.url)


def _verify(
    request: Request, body: bytes, integrations: list[Integration], state: State
) -> Integration:
    signature = request.headers.get("x-hubspot-signature-v3")
    timestamp = request.headers.get("x-hubspot-request-timestamp")
    if not signature or not timestamp:
        raise ApiError(401, "missing signature", "X-HubSpot-Signature-v3 and timestamp required")
    if not timestamp.isdigit():
        raise ApiError(401, "invalid timestamp", "X-HubSpot-Request-Timestamp is unix ms")
    age_ms = time.time() * 1000 - int(timestamp)
    if abs(age_ms) > MAX_TIMESTAMP_AGE_MS:
        raise ApiError(401, "expired timestamp", "the request is older than five minutes")
    uri = _request_uri(request, state.settings.public_url)
    for integration in integrations:
        secret = str(credentials_of(state, integration).get("client_secret") or "")
        if not secret:
            continue
        expected = signature_v3(secret, request.method, uri, body, timestamp)
        if hmac.compare_digest(expected, signature):
            return integration
    raise ApiError(401, "invalid signature", None)


@router.post(
    "/{tenant}",
    responses=CRM_WEBHOOK_RESPONSES,
    openapi_extra=webhook_body("A batch of HubSpot webhook events (v3 signature).", array=True),
)
async def hubspot_webhook(tenant: str, request: Request, state: State) -> JSONResponse:
    require_json_content_type(request)
    body = await read_body(request, state.settings.max_webhook_bytes)
    async with state.db.session() as session:
        await load_tenant(session, tenant)
    integrations = await integrations_of_kind(state, tenant_id=tenant, kind=CrmKind.HUBSPOT)
    if not integrations:
        raise ApiError(404, "no HubSpot integration", f"tenant {tenant} has none configured")
    integration = _verify(request, body, integrations, state)
    try:
        events = load_json(body)
    except WebhookPayloadError as exc:
        raise ApiError(422, "invalid JSON", exc.message) from None
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise ApiError(422, "not a HubSpot webhook batch", "expected a JSON array of events")

    report = InboundReport()
    # one update per record: a batch often carries several properties of one contact
    changes: dict[str, dict[str, Any]] = {}
    deleted: list[str] = []
    for event in events:
        kind = str(event.get("subscriptionType", ""))
        object_id = event.get("objectId")
        is_contact = kind.startswith("contact.") or (
            kind.startswith("object.") and str(event.get("objectTypeId")) == CONTACT_OBJECT_TYPE
        )
        if not is_contact or object_id is None:
            report.ignored += 1
            continue
        if kind.endswith(".propertyChange") and event.get("propertyName"):
            changes.setdefault(str(object_id), {})[str(event["propertyName"])] = event.get(
                "propertyValue"
            )
        elif kind.endswith(".deletion") or kind.endswith(".privacyDeletion"):
            deleted.append(str(object_id))
        else:
            report.ignored += 1
    for remote_id, props in changes.items():
        await apply_remote_changes(
            state, integration=integration, remote_id=remote_id, changes=props, report=report
        )
    for remote_id in deleted:
        await forget_remote_record(
            state, integration=integration, remote_id=remote_id, report=report
        )
    return JSONResponse(report.as_json())
