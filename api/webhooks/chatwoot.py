"""`POST /webhooks/chatwoot/{tenant}`: Chatwoot account / API-inbox / agent-bot webhooks."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import State
from api.webhooks.body import require_json_content_type
from api.webhooks.chatwoot_contacts import handle_contact_event
from api.webhooks.common import (
    WEBHOOK_RESPONSES,
    dispatch,
    parse_or_422,
    read_body,
    tenant_and_settings,
    verify_chatwoot,
    webhook_body,
)
from api.webhooks.parsers.chatwoot import parse_chatwoot

router = APIRouter(prefix="/webhooks/chatwoot", tags=["webhooks"])


@router.post(
    "/{tenant}",
    responses=WEBHOOK_RESPONSES,
    openapi_extra=webhook_body(
        "A Chatwoot webhook event (messages, conversation and contact events)."
    ),
)
async def chatwoot_webhook(tenant: str, request: Request, state: State) -> JSONResponse:
    require_json_content_type(request)
    body = await read_body(request, state.settings.max_webhook_bytes)
    row, settings = await tenant_and_settings(state, tenant)
    verify_chatwoot(
        settings.chatwoot.webhook_secret if settings.chatwoot else None,
        body,
        request.headers.get("x-chatwoot-signature"),
        request.headers.get("x-chatwoot-timestamp"),
        allow_unsigned=settings.allow_unsigned_webhooks,
    )
    # contact_created / contact_updated feed the CRM sync (api/webhooks/chatwoot_contacts.py)
    contact_answer = await handle_contact_event(state, tenant_id=row.id, body=body)
    if contact_answer is not None:
        return contact_answer
    parsed = parse_or_422(lambda: parse_chatwoot(body, tenant_id=row.id))
    return await dispatch(state, parsed)
