"""Meta Graph API sends: WhatsApp Cloud API and Messenger.

WhatsApp: `POST {graph_url}/{phone_number_id}/messages` with
`{"messaging_product": "whatsapp", "recipient_type": "individual", "to", "type": "text",
"text": {"preview_url": false, "body"}}`; the answer holds `messages[0].id` (a wamid).
Messenger: `POST {graph_url}/me/messages` with `{"recipient": {"id": PSID},
"messaging_type": "RESPONSE", "message": {"text"}}`; the answer holds `message_id`.

Tokens travel in the `Authorization: Bearer` header (Graph API accepts it for every token type)
rather than the `access_token` query parameter of Meta's curl samples, because URLs end up in
access logs and in httpx's own request logging."""

from __future__ import annotations

import re
from typing import Any

import httpx

from activities.channels.base import (
    error_detail,
    json_body,
    not_configured,
    parse_retry_after,
    rejected,
    unavailable,
    url_refused,
)
from models.messages import OutboundMessage
from models.netguard import UrlRefused
from models.tenant import MetaSettings, TenantSettings, channel_configured

WHATSAPP = "whatsapp"
MESSENGER = "messenger"

# Graph error codes that mean "slow down" or "try again", whatever the HTTP status says: Meta often
# reports throttling as 400/403. 1/2: unknown/temporary service error; 4, 17, 32, 613: app, user,
# page and custom rate limits; 80007 and 130429, 131048, 131056: WhatsApp account, throughput,
# spam and pair rate limits.
_RETRYABLE_GRAPH_CODES = frozenset({1, 2, 4, 17, 32, 613, 80007, 130429, 131048, 131056})


def graph_error_code(body: Any) -> int | None:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = body["error"].get("code")
        if isinstance(code, int):
            return code
    return None


async def graph_post(
    http: httpx.AsyncClient, channel: str, url: str, *, token: str, body: dict[str, Any]
) -> Any:
    try:
        response = await http.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
    except UrlRefused as exc:
        # A graph_url the guard refuses is the tenant's configuration: final, with the reason.
        raise url_refused(channel, url, exc) from exc
    except httpx.TransportError as exc:
        raise unavailable(channel, f"{type(exc).__name__} calling {url}: {exc}") from exc
    status = response.status_code
    if status < 400:
        return json_body(response)
    detail = error_detail(response)
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if status in (408, 429) or status >= 500:
        raise unavailable(channel, detail, status=status, retry_after=retry_after)
    if graph_error_code(json_body(response)) in _RETRYABLE_GRAPH_CODES:
        raise unavailable(channel, detail, status=status, retry_after=retry_after)
    raise rejected(channel, detail, status=status)


def whatsapp_recipient(contact: str) -> str:
    """Cloud API `to`: the phone number in international format, digits only."""
    value = contact.strip()
    for suffix in ("@c.us", "@s.whatsapp.net"):
        value = value.removesuffix(suffix)
    digits = re.sub(r"[^0-9]", "", value)
    if value.startswith("00"):
        digits = digits[2:]
    if not 7 <= len(digits) <= 15 or "@" in value:
        raise rejected(WHATSAPP, f"{contact!r} is not a phone number")
    return digits


class MetaWhatsAppChannel:
    name = WHATSAPP

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    def configured(self, settings: TenantSettings) -> bool:
        # the one definition (models/tenant.py): the block is there with its required fields
        return channel_configured(settings, WHATSAPP)

    async def send(self, message: OutboundMessage, settings: TenantSettings) -> str | None:
        meta = settings.whatsapp
        if meta is None:
            raise not_configured(WHATSAPP, "whatsapp")
        return await self.send_text(meta, to=message.to, text=message.text)

    async def send_text(self, meta: MetaSettings, *, to: str, text: str) -> str | None:
        if meta.access_token is None:
            raise not_configured(WHATSAPP, "whatsapp.access_token")
        if not meta.phone_number_id:
            raise not_configured(WHATSAPP, "whatsapp.phone_number_id")
        body = await graph_post(
            self.http,
            WHATSAPP,
            f"{meta.graph_url.rstrip('/')}/{meta.phone_number_id}/messages",
            token=meta.access_token.get_secret_value(),
            body={
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": whatsapp_recipient(to),
                "type": "text",
                "text": {"preview_url": False, "body": text},
            },
        )
        if isinstance(body, dict):
            messages = body.get("messages")
            if isinstance(messages, list) and messages and isinstance(messages[0], dict):
                ident = messages[0].get("id")
                return str(ident) if ident else None
        return None


class MessengerChannel:
    name = MESSENGER

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    def configured(self, settings: TenantSettings) -> bool:
        # the one definition (models/tenant.py): the block is there with its required fields
        return channel_configured(settings, MESSENGER)

    async def send(self, message: OutboundMessage, settings: TenantSettings) -> str | None:
        meta = settings.messenger
        if meta is None:
            raise not_configured(MESSENGER, "messenger")
        if meta.page_access_token is None:
            raise not_configured(MESSENGER, "messenger.page_access_token")
        psid = message.to.strip()
        if not psid.isdigit():
            raise rejected(MESSENGER, f"{message.to!r} is not a page-scoped id (PSID)")
        body = await graph_post(
            self.http,
            MESSENGER,
            f"{meta.graph_url.rstrip('/')}/me/messages",
            token=meta.page_access_token.get_secret_value(),
            body={
                "recipient": {"id": psid},
                # RESPONSE: a reply inside the 24-hour window opened by the lead's message.
                "messaging_type": "RESPONSE",
                "message": {"text": message.text},
            },
        )
        if isinstance(body, dict) and body.get("message_id"):
            return str(body["message_id"])
        return None
