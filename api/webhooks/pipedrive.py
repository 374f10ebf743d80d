"""`POST /webhooks/pipedrive/{tenant}`: Pipedrive person webhooks (v1 `current`/`previous` and
v2 `data`/`previous` shapes), authenticated by the HTTP Basic credentials set on the webhook
(`webhook_user` / `webhook_password` in the Pipedrive integration's credentials)."""

from __future__ import annotations

import base64
import binascii
import hmac
import re
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

router = APIRouter(prefix="/webhooks/pipedrive", tags=["webhooks"])

CUSTOM_KEY = re.compile(r"^[0-9a-f]{40}$")


def _basic(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password


def _verify(request: Request, integrations: list[Integration], state: State) -> Integration:
    given = _basic(request.headers.get("authorization"))
    if given is None:
        raise ApiError(401, "missing credentials", "configure HTTP auth on the Pipedrive webhook")
    for integration in integrations:
        creds = credentials_of(state, integration)
        user = str(creds.get("webhook_user") or "")
        password = str(creds.get("webhook_password") or "")
        if (
            user
            and password
            and hmac.compare_digest(user, given[0])
            and hmac.compare_digest(password, given[1])
        ):
            return integration
    raise ApiError(401, "invalid credentials", None)


def _primary(value: Any) -> Any:
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and item.get("primary") in (True, "true"):
                return item.get("value")
        first = value[0] if value else None
        return first.get("value") if isinstance(first, dict) else first
    return value


def _properties(person: dict[str, Any]) -> dict[str, Any]:
    """{mapping target: value} of a person in either API version's shape."""
    props: dict[str, Any] = {}
    if "name" in person:
        props["name"] = person.get("name")
    for key in ("email", "phone"):
        raw = person.get(f"{key}s", person.get(key))
        if raw is not None:
            props[key] = _primary(raw)
    custom = person.get("custom_fields")
    items = list(custom.items()) if isinstance(custom, dict) else []
    items += [(k, v) for k, v in person.items() if CUSTOM_KEY.match(k)]
    for key, value in items:
        props[key] = value.get("value") if isinstance(value, dict) else value
    return props


@router.post(
    "/{tenant}",
    responses=CRM_WEBHOOK_RESPONSES,
    openapi_extra=webhook_body("A Pipedrive webhook (v1 or v2, HTTP basic auth)."),
)
async def pipedrive_webhook(tenant: str, request: Request, state: State) -> JSONResponse:
    require_json_content_type(request)
    body = await read_body(request, state.settings.max_webhook_bytes)
    async with state.db.session() as session:
        await load_tenant(session, tenant)
    integrations = await integrations_of_kind(state, tenant_id=tenant, kind=CrmKind.PIPEDRIVE)
    if not integrations:
        raise ApiError(404, "no Pipedrive integration", f"tenant {tenant} has none configured")
    integration = _verify(request, integrations, state)
    try:
        payload = load_json(body)
    except WebhookPayloadError as exc:
        raise ApiError(422, "invalid JSON", exc.message) from None
    if not isinstance(payload, dict) or not isinstance(payload.get("meta"), dict):
        raise ApiError(422, "not a Pipedrive webhook", "expected an object with `meta`")

    meta = payload["meta"]
    entity = meta.get("entity") or meta.get("object")
    action = str(meta.get("action", ""))
    current = payload.get("data") or payload.get("current") or {}
    previous = payload.get("previous") or {}
    remote = meta.get("entity_id") or meta.get("id") or (current or {}).get("id")
    report = InboundReport()
    if entity != "person" or remote is None:
        report.ignored += 1
        return JSONResponse(report.as_json())
    if action in ("delete", "deleted"):
        await forget_remote_record(
            state, integration=integration, remote_id=str(remote), report=report
        )
        return JSONResponse(report.as_json())
    now = _properties(current if isinstance(current, dict) else {})
    before = _properties(previous if isinstance(previous, dict) else {})
    # only what changed: v1 sends the whole person in `current` and `previous`
    changed = {k: v for k, v in now.items() if not previous or before.get(k) != v}
    if changed:
        await apply_remote_changes(
            state, integration=integration, remote_id=str(remote), changes=changed, report=report
        )
    return JSONResponse(report.as_json())
