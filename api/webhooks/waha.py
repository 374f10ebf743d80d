"""`POST /webhooks/waha/{tenant}`: WAHA events (messages, receipts, session events)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import State
from api.webhooks.body import require_json_content_type
from api.webhooks.common import (
    WEBHOOK_RESPONSES,
    dispatch,
    parse_or_422,
    read_body,
    tenant_and_settings,
    verify_waha,
    webhook_body,
)
from api.webhooks.parsers.waha import parse_waha
from api.webhooks.waha_identity import learn_from_twins, resolve_lids

router = APIRouter(prefix="/webhooks/waha", tags=["webhooks"])


@router.post(
    "/{tenant}",
    responses=WEBHOOK_RESPONSES,
    openapi_extra=webhook_body(
        "A WAHA event (`message`, `message.any`, receipts, session events)."
    ),
)
async def waha_webhook(tenant: str, request: Request, state: State) -> JSONResponse:
    require_json_content_type(request)
    body = await read_body(request, state.settings.max_webhook_bytes)
    row, settings = await tenant_and_settings(state, tenant)
    verify_waha(
        settings.waha.webhook_secret if settings.waha else None,
        body,
        request.headers.get("x-webhook-hmac"),
        request.headers.get("x-webhook-hmac-algorithm"),
        allow_unsigned=settings.allow_unsigned_webhooks,
    )
    parsed = parse_or_422(
        lambda: parse_waha(body, tenant_id=row.id, group_chats_enabled=settings.group_chats_enabled)
    )
    # Before the inbox: both copies of a message must name the same conversation.
    parsed = await resolve_lids(parsed, db=state.db, waha=settings.waha)
    return await dispatch(
        state, parsed, on_duplicate=lambda copies: learn_from_twins(copies, db=state.db)
    )
