"""WAHA (WhatsApp HTTP API): `POST {base_url}/api/sendText` with the `X-Api-Key` header.

A retried send first lists the chat's own messages since the claim
(`GET /api/{session}/chats/{chatId}/messages?filter.fromMe=true&filter.timestamp.gte=...`,
wire/waha_lids_and_identity.md §6) and looks for its exact text: sendText takes no idempotency
key we could rely on (the pre-generated id of WAHA 2026.4.3+ is documented for status messages
only, §7)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from activities.channels.base import get_json, json_body, not_configured, post_json, rejected
from models.identity import normalise_waha_chat_id
from models.messages import OutboundMessage
from models.tenant import TenantSettings, WahaSettings, channel_configured

NAME = "waha"

# Chat ids WAHA accepts as `chatId` (wire/waha.md "Chat id formats"): users, hidden ids, groups.
_CHAT_ID_RE = re.compile(r"^[0-9A-Za-z.\-_]+@(c\.us|lid|g\.us|newsletter)$")
_E164_DIGITS = (7, 15)  # E.164 allows at most 15 digits; shorter than 7 is no phone number
SENT_CHECK_LIMIT = 50
"""Own messages in one chat since the claim: a handful; 50 leaves room for a busy operator."""


def normalise_chat_id(contact: str) -> str:
    """A lead's contact as WAHA's chatId: "31612345678@c.us" stays, "+31 6 1234 5678" becomes it.

    The rule is models.identity's (the webhooks use it too); a send refuses what still is no
    chat id, and a bare number outside E.164's length, as permanent errors."""
    value = normalise_waha_chat_id(contact)
    if "@" not in contact:
        digits = value.removesuffix("@c.us")
        if not digits.isdigit() or not (_E164_DIGITS[0] <= len(digits) <= _E164_DIGITS[1]):
            raise rejected(NAME, f"{contact!r} is not a phone number or chat id")
    if not _CHAT_ID_RE.match(value):
        raise rejected(NAME, f"{contact!r} is not a WhatsApp chat id")
    return value


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
        # the one definition (models/tenant.py): the block is there with its required fields
        return channel_configured(settings, NAME)

    async def send(self, message: OutboundMessage, settings: TenantSettings) -> str | None:
        waha, api_key = _credentials(settings)
        response = await post_json(
            self.http,
            NAME,
            f"{waha.base_url.rstrip('/')}/api/sendText",
            body={
                "session": waha.session,
                "chatId": normalise_chat_id(message.to),
                "text": message.text,
            },
            headers={"X-Api-Key": api_key, "Accept": "application/json"},
        )
        return waha_message_id(json_body(response))

    async def already_sent(
        self, message: OutboundMessage, settings: TenantSettings, *, since: datetime
    ) -> list[str]:
        """Our own messages in the lead's chat since `since` whose body is exactly the text.

        Only the chat id we send to is listed. A WAHA before 2026.3.1 keeps a lead's `@lid` and
        `@c.us` messages in different chats (wire/waha_lids_and_identity.md §6); if it filed
        our send under the lead's `@lid`, this misses it and the retry sends again
        (at-least-once). Listing the lid's chat too would cost a `/lids/pn/{phone}` lookup per
        check; left out. NOWEB lists only with its store enabled; without it the check fails
        and the retry sends."""
        waha, api_key = _credentials(settings)
        chat_id = normalise_chat_id(message.to)
        gte = int(since.timestamp())
        body = await get_json(
            self.http,
            NAME,
            f"{waha.base_url.rstrip('/')}/api/{quote(waha.session, safe='')}"
            f"/chats/{quote(chat_id, safe='@')}/messages",
            params={
                "limit": str(SENT_CHECK_LIMIT),
                "downloadMedia": "false",
                "filter.fromMe": "true",
                "filter.timestamp.gte": str(gte),
            },
            headers={"X-Api-Key": api_key, "Accept": "application/json"},
        )
        if not isinstance(body, list):
            raise ValueError(f"WAHA's chat messages answer is not a list: {str(body)[:200]}")
        found: list[tuple[float, str]] = []
        for item in body:
            # The filters again, client-side: an engine that ignores one must not make an
            # incoming message or an older one with the same text count as ours.
            if not isinstance(item, dict) or item.get("fromMe") is not True:
                continue
            timestamp = item.get("timestamp")
            if not isinstance(timestamp, (int, float)) or isinstance(timestamp, bool):
                continue
            if timestamp < gte:
                continue
            ident = waha_message_id(item)
            if ident is not None and item.get("body") == message.text:
                found.append((timestamp, ident))
        return [ident for _, ident in sorted(found)]


def _credentials(settings: TenantSettings) -> tuple[WahaSettings, str]:
    waha = settings.waha
    if waha is None:
        raise not_configured(NAME, "waha")
    if waha.api_key is None:
        raise not_configured(NAME, "waha.api_key")
    return waha, waha.api_key.get_secret_value()
