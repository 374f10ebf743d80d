"""Meta Graph API webhooks: `/webhooks/whatsapp/{tenant}` (WhatsApp Cloud API) and
`/webhooks/messenger/{tenant}` (Facebook Page), each with Meta's GET verification handshake."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from api.deps import State
from api.errors import ApiError
from api.webhooks.body import require_json_content_type
from api.webhooks.common import (
    VERIFY_RESPONSES,
    WEBHOOK_RESPONSES,
    dispatch,
    parse_or_422,
    read_body,
    tenant_and_settings,
    verify_meta,
    webhook_body,
)
from api.webhooks.parsers.meta import parse_messenger, parse_whatsapp
from models.common import Channel
from models.tenant import MetaSettings, TenantSettings

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

Mode = Annotated[str | None, Query(alias="hub.mode")]
Token = Annotated[str | None, Query(alias="hub.verify_token")]
Challenge = Annotated[str | None, Query(alias="hub.challenge")]


def _meta_settings(settings: TenantSettings, channel: Channel) -> MetaSettings | None:
    return settings.whatsapp if channel is Channel.WHATSAPP else settings.messenger


async def _verify_subscription(
    state: State,
    tenant: str,
    channel: Channel,
    mode: str | None,
    token: str | None,
    challenge: str | None,
) -> PlainTextResponse:
    """Meta's handshake: echo hub.challenge (as plain text) when the verify token matches."""
    _, settings = await tenant_and_settings(state, tenant)
    meta = _meta_settings(settings, channel)
    if mode != "subscribe":
        raise ApiError(403, "verification failed", f"hub.mode must be 'subscribe', got {mode!r}")
    if meta is None or meta.verify_token is None:
        raise ApiError(403, "verification failed", f"no {channel.value} verify_token is configured")
    if not token or not hmac.compare_digest(
        meta.verify_token.get_secret_value().encode(), token.encode()
    ):
        raise ApiError(403, "verification failed", "hub.verify_token does not match")
    if not challenge:
        raise ApiError(400, "verification failed", "hub.challenge is missing")
    return PlainTextResponse(challenge)


async def _receive(state: State, tenant: str, channel: Channel, request: Request) -> JSONResponse:
    require_json_content_type(request)
    body = await read_body(request, state.settings.max_webhook_bytes)
    row, settings = await tenant_and_settings(state, tenant)
    meta = _meta_settings(settings, channel)
    verify_meta(
        meta.app_secret if meta else None,
        body,
        request.headers.get("x-hub-signature-256"),
        allow_unsigned=settings.allow_unsigned_webhooks,
    )
    if channel is Channel.WHATSAPP:
        parsed = parse_or_422(lambda: parse_whatsapp(body, tenant_id=row.id))
    else:
        parsed = parse_or_422(lambda: parse_messenger(body, tenant_id=row.id))
    return await dispatch(state, parsed)


@router.get("/whatsapp/{tenant}", response_class=PlainTextResponse, responses=VERIFY_RESPONSES)
async def whatsapp_verify(
    tenant: str, state: State, mode: Mode = None, token: Token = None, challenge: Challenge = None
) -> PlainTextResponse:
    return await _verify_subscription(state, tenant, Channel.WHATSAPP, mode, token, challenge)


@router.post(
    "/whatsapp/{tenant}",
    responses=WEBHOOK_RESPONSES,
    openapi_extra=webhook_body(
        "A WhatsApp Cloud API notification (`object: whatsapp_business_account`)."
    ),
)
async def whatsapp_webhook(tenant: str, request: Request, state: State) -> JSONResponse:
    return await _receive(state, tenant, Channel.WHATSAPP, request)


@router.get("/messenger/{tenant}", response_class=PlainTextResponse, responses=VERIFY_RESPONSES)
async def messenger_verify(
    tenant: str, state: State, mode: Mode = None, token: Token = None, challenge: Challenge = None
) -> PlainTextResponse:
    return await _verify_subscription(state, tenant, Channel.MESSENGER, mode, token, challenge)


@router.post(
    "/messenger/{tenant}",
    responses=WEBHOOK_RESPONSES,
    openapi_extra=webhook_body("A Messenger Platform notification (`object: page`)."),
)
async def messenger_webhook(tenant: str, request: Request, state: State) -> JSONResponse:
    return await _receive(state, tenant, Channel.MESSENGER, request)
