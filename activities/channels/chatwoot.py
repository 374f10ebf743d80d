"""Chatwoot Application API: replies, private notes and assignments in a Chatwoot conversation.

All calls carry the `api_access_token` header (wire/chatwoot.md §5). A reply and a private note
are the same call, `POST /api/v1/accounts/{account_id}/conversations/{conversation_id}/messages`,
told apart by `private`.

A retried reply first lists the conversation's messages (`GET` on the same path; Chatwoot's
`messages/index.json.jbuilder` and `MessageFinder`: `{"meta", "payload": [message]}`, the latest
20, `message_type` as its enum integer, `created_at` in unix seconds) and looks for an outgoing,
public message with its exact text since the claim. Private notes (specialist alerts) are not
checked: a duplicate note is seen only by agents."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from activities.channels.base import get_json, json_body, not_configured, post_json, rejected
from models.messages import OutboundMessage
from models.tenant import ChatwootSettings, TenantSettings, channel_configured

NAME = "chatwoot"
OUTGOING = 1
"""`message_type` of an outgoing message in the list answer (Message enum: incoming 0,
outgoing 1, activity 2, template 3; wire/chatwoot.md §2); webhooks spell it "outgoing"."""


def _conversation_id(value: str | int | None) -> str:
    text = str(value).strip() if value is not None else ""
    if not text.isdigit():
        # Without the numeric conversation id there is nowhere to post: a retry cannot help.
        raise rejected(NAME, f"{value!r} is not a Chatwoot conversation id")
    return text


class ChatwootChannel:
    name = NAME

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    def configured(self, settings: TenantSettings) -> bool:
        # the one definition (models/tenant.py): the block is there with its required fields
        return channel_configured(settings, NAME)

    async def send(self, message: OutboundMessage, settings: TenantSettings) -> str | None:
        """An outgoing reply in the conversation `message.thread` (Chatwoot delivers it)."""
        return await self._create_message(
            settings, conversation_id=message.thread, content=message.text, private=False
        )

    async def already_sent(
        self, message: OutboundMessage, settings: TenantSettings, *, since: datetime
    ) -> list[str]:
        """Outgoing public messages in the conversation `message.thread` whose content is
        exactly the text, created at or after `since`. Only the latest page (20 messages) is
        read: a retry comes minutes after the claim, and a conversation that got more than 20
        messages since then is answered again (at-least-once)."""
        chatwoot, token = self._credentials(settings)
        body = await get_json(
            self.http,
            NAME,
            self._conversation_url(chatwoot, message.thread, "messages"),
            params={},
            headers={"api_access_token": token},
        )
        payload = body.get("payload") if isinstance(body, dict) else None
        if not isinstance(payload, list):
            raise ValueError(f"Chatwoot's messages answer has no payload list: {str(body)[:200]}")
        gte = since.timestamp()
        found: list[tuple[float, str]] = []
        for item in payload:
            if not isinstance(item, dict) or item.get("private") is not False:
                continue
            if item.get("message_type") not in (OUTGOING, "outgoing"):
                continue
            created = item.get("created_at")
            if not isinstance(created, (int, float)) or isinstance(created, bool) or created < gte:
                continue
            if item.get("id") is not None and item.get("content") == message.text:
                found.append((created, str(item["id"])))
        return [ident for _, ident in sorted(found)]

    async def private_note(
        self, conversation_id: str | int, text: str, *, settings: TenantSettings
    ) -> str | None:
        """A note only agents see; returns the Chatwoot message id."""
        return await self._create_message(
            settings, conversation_id=conversation_id, content=text, private=True
        )

    async def assign(
        self, conversation_id: str | int, assignee_id: int, *, settings: TenantSettings
    ) -> None:
        """Assign the conversation to an agent (`POST .../assignments {"assignee_id"}`)."""
        chatwoot, token = self._credentials(settings)
        await post_json(
            self.http,
            NAME,
            self._conversation_url(chatwoot, conversation_id, "assignments"),
            body={"assignee_id": assignee_id},
            headers={"api_access_token": token},
        )

    async def _create_message(
        self,
        settings: TenantSettings,
        *,
        conversation_id: str | int | None,
        content: str,
        private: bool,
    ) -> str | None:
        chatwoot, token = self._credentials(settings)
        response = await post_json(
            self.http,
            NAME,
            self._conversation_url(chatwoot, conversation_id, "messages"),
            body={
                "content": content,
                "message_type": "outgoing",
                "private": private,
                "content_type": "text",
            },
            headers={"api_access_token": token},
        )
        body: Any = json_body(response)
        if isinstance(body, dict) and body.get("id") is not None:
            return str(body["id"])
        return None

    @staticmethod
    def _credentials(settings: TenantSettings) -> tuple[ChatwootSettings, str]:
        if settings.chatwoot is None:
            raise not_configured(NAME, "chatwoot")
        if settings.chatwoot.api_token is None:
            raise not_configured(NAME, "chatwoot.api_token")
        return settings.chatwoot, settings.chatwoot.api_token.get_secret_value()

    @staticmethod
    def _conversation_url(
        chatwoot: ChatwootSettings, conversation_id: str | int | None, leaf: str
    ) -> str:
        return (
            f"{chatwoot.base_url.rstrip('/')}/api/v1/accounts/{chatwoot.account_id}"
            f"/conversations/{_conversation_id(conversation_id)}/{leaf}"
        )
