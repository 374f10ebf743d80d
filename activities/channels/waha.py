"""WAHA (WhatsApp HTTP API): `POST {base_url}/api/sendText` with the `X-Api-Key` header."""

from __future__ import annotations

import re
from typing import Any

import httpx

from activities.channels.base import json_body, not_configured, post_json, rejected
from models.messages import OutboundMessage
from models.tenant import TenantSettings

NAME = "waha"

# Chat ids WAHA accepts as `chatId` (wire/waha.md "Chat id formats"): users, hidden ids, groups.
_CHAT_ID_RE = re.compile(r"^[0-9A-Za-z.\-_]+@(c\.us|lid|g\.us|newsletter)$")
_E164_DIGITS = (7, 15)  # E.164 allows at most 15 digits; shorter than 7 is no phone number


def normalise_chat_id(contact: str) -> str:
    """A lead's contact as WAHA's chatId: "31612345678@c.us" stays, "+31 6 1234 5678" becomes it.

    `@s.whatsapp.net` ids appear inside GOWS/NOWEB payloads but must not be used to send, so
    they are converted to `@c.us` as the WAHA docs say."""
    value = contact.strip()
    if value.endswith("@s.whatsapp.net"):
        value = value.removesuffix("@s.whatsapp.net") + "@c.us"
    if "@" in value:
        if not _CHAT_ID_RE.match(value):
            raise rejected(NAME, f"{contact!r} is not a WhatsApp chat id")
        return value
    digits = re.sub(r"[^0-9]", "", value)
    if value.startswith("00"):
        digits = digits[2:]  # international call prefix, not part of the number
    if not (_E164_DIGITS[0] <= len(digits) <= _E164_DIGITS[1]):
        raise rejected(NAME, f"{contact!r} is not a phone number or chat id")
    return f"{digits}@c.us"


def waha_message_id(body: Any) -> str | None:
    """The sent message's id. WAHA returns the engine's message object (no documented shape):
    `id` is a string on some engines, an object with `_serialized` on WEBJS, `key.id` on NOWEB."""
    if not isinstance(body, dict):
        return None
    ident = body.get("id")
    if isinstance(ident, str) and ident:
        return ident
    if isinstance(ident, dict):
        serialized = ident.get("_serialized") or ident.get("id")
        if isinstance(serialized, str) and serialized:
            return serialized
    key = body.get("key")
    if isinstance(key, dict) and isinstance(key.get("id"), str):
        return str(key["id"])
    return None


class WahaChannel:
    name = NAME

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    def configured(self, settings: TenantSettings) -> bool:
        return settings.waha is not None

    async def send(self, message: OutboundMessage, settings: TenantSettings) -> str | None:
        waha = settings.waha
        if waha is None:
            raise not_configured(NAME, "waha")
        if waha.api_key is None:
            raise not_configured(NAME, "waha.api_key")
        response = await post_json(
            self.http,
            NAME,
            f"{waha.base_url.rstrip('/')}/api/sendText",
            body={
                "session": waha.session,
                "chatId": normalise_chat_id(message.to),
                "text": message.text,
            },
            headers={"X-Api-Key": waha.api_key.get_secret_value(), "Accept": "application/json"},
        )
        return waha_message_id(json_body(response))
