"""Chatwoot as a CRM: contact custom attributes (lead score, quality, interests and the custom
attributes of models/lead_attributes.py), the lead's tags as conversation labels, and private
notes.

Labels (chatwoot.md §7: the POST replaces the conversation's whole list): the lead's tags
replace the labels leadflow wrote before (`models.tags.is_leadflow_tag`), and every label a
team set by hand stays. A lead no conversation tagged yet (a lead from an enrichment job) gets
its quality and interests as before, added to what is there."""

from __future__ import annotations

import re
from typing import Any, ClassVar

import httpx

from activities.crm.base import Connection, RemoteRecord, UpsertResult, body_of, send
from models.crm import CrmKind, LeadSnapshot
from models.tags import is_leadflow_tag


def lead_labels(lead: LeadSnapshot) -> list[str]:
    """Labels leadflow owns on a conversation: the lead's tags; for a lead without tags (no
    conversation tagged it yet) the quality, and one per interest."""
    if lead.tags:
        return list(lead.tags)
    labels = [f"lead-{lead.quality.lower()}"]
    for interest in lead.interests:
        slug = re.sub(r"[^a-z0-9]+", "-", interest.lower()).strip("-")
        if slug:
            labels.append(f"interest-{slug}")
    return labels


def merged_labels(lead: LeadSnapshot, existing: list[str]) -> list[str]:
    """The labels a conversation gets: a tagged lead's leadflow labels replaced by its tags now
    (a stage or a budget band that changed goes), a hand-set label kept, order kept."""
    ours = lead_labels(lead)
    kept = [
        label
        for label in existing
        if not (lead.tags and is_leadflow_tag(label) and label not in ours)
    ]
    return kept + [label for label in ours if label not in kept]


class ChatwootAdapter:
    kind: ClassVar[CrmKind] = CrmKind.CHATWOOT
    # contact search is throttled at 100/min per account
    min_interval_seconds: ClassVar[float] = 0.0

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    def _headers(self, conn: Connection) -> dict[str, str]:
        return {"api_access_token": str(conn.credentials.get("api_token", ""))}

    def _account(self, conn: Connection) -> str:
        return f"{conn.base_url}/api/v1/accounts/{conn.credentials.get('account_id', 1)}"

    async def _contact(self, conn: Connection, contact_id: str) -> dict[str, Any] | None:
        response = await send(
            self._http,
            conn,
            "read contact",
            "GET",
            f"{self._account(conn)}/contacts/{contact_id}",
            headers=self._headers(conn),
            allow=(404,),
        )
        if response.status_code == 404:
            return None
        payload = body_of(response).get("payload")
        if isinstance(payload, dict) and isinstance(payload.get("contact"), dict):
            payload = payload["contact"]
        return payload if isinstance(payload, dict) else None

    async def _find(self, conn: Connection, lead: LeadSnapshot) -> dict[str, Any] | None:
        for term in (lead.email, lead.phone):
            if not term:
                continue
            response = await send(
                self._http,
                conn,
                "search contact",
                "GET",
                f"{self._account(conn)}/contacts/search",
                params={"q": term},
                headers=self._headers(conn),
            )
            payload = body_of(response).get("payload") or []
            for contact in payload if isinstance(payload, list) else []:
                if isinstance(contact, dict) and term in (
                    contact.get("email"),
                    contact.get("phone_number"),
                ):
                    return contact
        return None

    async def _labels(self, conn: Connection, conversation_id: str) -> list[str]:
        response = await send(
            self._http,
            conn,
            "read labels",
            "GET",
            f"{self._account(conn)}/conversations/{conversation_id}/labels",
            headers=self._headers(conn),
        )
        payload = body_of(response).get("payload") or []
        return [str(label) for label in payload] if isinstance(payload, list) else []

    async def _set_labels(self, conn: Connection, conversation_id: str, labels: list[str]) -> None:
        # this call REPLACES the conversation's label set: callers pass the merged list
        await send(
            self._http,
            conn,
            "set labels",
            "POST",
            f"{self._account(conn)}/conversations/{conversation_id}/labels",
            json={"labels": labels},
            headers=self._headers(conn),
        )

    async def read(
        self, conn: Connection, lead: LeadSnapshot, remote_id: str | None
    ) -> RemoteRecord | None:
        contact = await self._contact(conn, remote_id) if remote_id else None
        if contact is None:
            contact = await self._find(conn, lead)
        if contact is None:
            return None
        custom = contact.get("custom_attributes") or {}
        props = sorted(set(conn.mapping.values()))
        labels = {cid: await self._labels(conn, cid) for cid in lead.chatwoot_conversation_ids}
        return RemoteRecord(
            remote_id=str(contact["id"]),
            values={p: custom.get(p) for p in props},
            extra={"labels": labels},
        )

    async def upsert(
        self, conn: Connection, lead: LeadSnapshot, remote_id: str | None, values: dict[str, Any]
    ) -> UpsertResult:
        contact = await self._contact(conn, remote_id) if remote_id else None
        if contact is None:
            contact = await self._find(conn, lead)
        created = False
        if contact is None:
            response = await send(
                self._http,
                conn,
                "create contact",
                "POST",
                f"{self._account(conn)}/contacts",
                json={
                    "name": lead.name or lead.address,
                    "email": lead.email,
                    "phone_number": lead.phone,
                    "custom_attributes": values,
                },
                headers=self._headers(conn),
            )
            payload = body_of(response).get("payload") or {}
            contact = payload.get("contact", payload) if isinstance(payload, dict) else {}
            created = True
        else:
            merged = {**(contact.get("custom_attributes") or {}), **values}
            await send(
                self._http,
                conn,
                "update contact",
                "PUT",
                f"{self._account(conn)}/contacts/{contact['id']}",
                json={"custom_attributes": merged},
                headers=self._headers(conn),
            )
        ours = lead_labels(lead)
        for cid in lead.chatwoot_conversation_ids:
            existing = await self._labels(conn, cid)
            labels = merged_labels(lead, existing)
            if labels != existing:
                await self._set_labels(conn, cid, labels)
        return UpsertResult(
            str(contact["id"]), created=created, written=values, extra={"labels": ours}
        )

    async def restore(
        self,
        conn: Connection,
        lead: LeadSnapshot,
        remote_id: str,
        previous: dict[str, Any],
        previous_extra: dict[str, Any],
    ) -> None:
        contact = await self._contact(conn, remote_id)
        if contact is not None:
            merged = {**(contact.get("custom_attributes") or {}), **previous}
            await send(
                self._http,
                conn,
                "restore contact",
                "PUT",
                f"{self._account(conn)}/contacts/{remote_id}",
                json={"custom_attributes": merged},
                headers=self._headers(conn),
            )
        for cid, labels in (previous_extra.get("labels") or {}).items():
            await self._set_labels(conn, str(cid), [str(label) for label in labels])

    async def delete(
        self,
        conn: Connection,
        lead: LeadSnapshot,
        remote_id: str | None,
        created_extra: dict[str, Any],
    ) -> bool:
        if remote_id is None:
            found = await self._find(conn, lead)
            if found is None:
                return False
            remote_id = str(found["id"])
        response = await send(
            self._http,
            conn,
            "delete contact",
            "DELETE",
            f"{self._account(conn)}/contacts/{remote_id}",
            headers=self._headers(conn),
            allow=(404,),
        )
        return response.status_code != 404

    async def add_note(
        self, conn: Connection, lead: LeadSnapshot, remote_id: str, text: str
    ) -> str | None:
        if not lead.chatwoot_conversation_ids:
            return None
        cid = lead.chatwoot_conversation_ids[-1]
        response = await send(
            self._http,
            conn,
            "add private note",
            "POST",
            f"{self._account(conn)}/conversations/{cid}/messages",
            json={"content": text, "message_type": "outgoing", "private": True},
            headers=self._headers(conn),
        )
        message_id = body_of(response).get("id")
        return str(message_id) if message_id is not None else None

    async def test_connection(self, conn: Connection) -> str:
        await send(
            self._http,
            conn,
            "test connection",
            "GET",
            f"{self._account(conn)}/contacts",
            params={"page": "1"},
            headers=self._headers(conn),
        )
        return f"Chatwoot account reachable at {conn.base_url}"
