"""HubSpot CRM v3 contacts: upsert by e-mail (or phone), custom properties, a note."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from activities.crm.base import Connection, RemoteRecord, UpsertResult, as_text, body_of, send
from models.crm import CrmKind, LeadSnapshot

CONTACTS = "/crm/v3/objects/contacts"
NOTES = "/crm/v3/objects/notes"
NOTE_TO_CONTACT_ASSOCIATION = 202  # HUBSPOT_DEFINED association type note -> contact


class HubSpotAdapter:
    kind: ClassVar[CrmKind] = CrmKind.HUBSPOT
    # private apps get 100-190 calls per 10 s; 10/s stays under every tier
    min_interval_seconds: ClassVar[float] = 0.1

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    def _headers(self, conn: Connection) -> dict[str, str]:
        return {"Authorization": f"Bearer {conn.credentials.get('access_token', '')}"}

    def _record(self, body: dict[str, Any], props: list[str]) -> RemoteRecord:
        properties = body.get("properties") or {}
        return RemoteRecord(remote_id=str(body["id"]), values={p: properties.get(p) for p in props})

    async def _get(
        self, conn: Connection, path_id: str, props: list[str], *, by_email: bool = False
    ) -> RemoteRecord | None:
        params: dict[str, str] = {"properties": ",".join(props)} if props else {}
        if by_email:
            params["idProperty"] = "email"
        response = await send(
            self._http,
            conn,
            "read contact",
            "GET",
            f"{conn.base_url}{CONTACTS}/{quote(path_id, safe='@')}",
            params=params,
            headers=self._headers(conn),
            allow=(404,),
        )
        if response.status_code == 404:
            return None
        return self._record(body_of(response), props)

    async def _search_phone(
        self, conn: Connection, phone: str, props: list[str]
    ) -> RemoteRecord | None:
        response = await send(
            self._http,
            conn,
            "search contact by phone",
            "POST",
            f"{conn.base_url}{CONTACTS}/search",
            json={
                "filterGroups": [
                    {"filters": [{"propertyName": "phone", "operator": "EQ", "value": phone}]}
                ],
                "properties": props,
                "limit": 1,
            },
            headers=self._headers(conn),
        )
        results = body_of(response).get("results") or []
        return self._record(results[0], props) if results else None

    async def read(
        self, conn: Connection, lead: LeadSnapshot, remote_id: str | None
    ) -> RemoteRecord | None:
        props = sorted(set(conn.mapping.values()))
        if remote_id:
            found = await self._get(conn, remote_id, props)
            if found is not None:
                return found
        if lead.email:
            return await self._get(conn, lead.email, props, by_email=True)
        if lead.phone:
            return await self._search_phone(conn, lead.phone, props)
        return None

    async def upsert(
        self, conn: Connection, lead: LeadSnapshot, remote_id: str | None, values: dict[str, Any]
    ) -> UpsertResult:
        properties = {k: as_text(v) for k, v in values.items()}
        if remote_id:
            response = await send(
                self._http,
                conn,
                "update contact",
                "PATCH",
                f"{conn.base_url}{CONTACTS}/{remote_id}",
                json={"properties": properties},
                headers=self._headers(conn),
            )
            return UpsertResult(str(body_of(response)["id"]), created=False, written=properties)
        if lead.email:
            # batch upsert by e-mail is idempotent: a retried create finds the first one
            response = await send(
                self._http,
                conn,
                "upsert contact",
                "POST",
                f"{conn.base_url}{CONTACTS}/batch/upsert",
                json={
                    "inputs": [{"id": lead.email, "idProperty": "email", "properties": properties}]
                },
                headers=self._headers(conn),
            )
            result = (body_of(response).get("results") or [{}])[0]
            return UpsertResult(
                str(result["id"]), created=bool(result.get("new")), written=properties
            )
        if lead.phone:
            existing = await self._search_phone(conn, lead.phone, [])
            if existing is not None:
                return await self.upsert(conn, lead, existing.remote_id, values)
        response = await send(
            self._http,
            conn,
            "create contact",
            "POST",
            f"{conn.base_url}{CONTACTS}",
            json={"properties": properties},
            headers=self._headers(conn),
        )
        return UpsertResult(str(body_of(response)["id"]), created=True, written=properties)

    async def restore(
        self,
        conn: Connection,
        lead: LeadSnapshot,
        remote_id: str,
        previous: dict[str, Any],
        previous_extra: dict[str, Any],
    ) -> None:
        # "Properties values can be cleared by passing an empty string."
        await send(
            self._http,
            conn,
            "restore contact",
            "PATCH",
            f"{conn.base_url}{CONTACTS}/{remote_id}",
            json={"properties": {k: as_text(v) for k, v in previous.items()}},
            headers=self._headers(conn),
        )

    async def delete(
        self,
        conn: Connection,
        lead: LeadSnapshot,
        remote_id: str | None,
        created_extra: dict[str, Any],
    ) -> bool:
        if remote_id is None:
            found = await self.read(conn, lead, None)
            if found is None:
                return False
            remote_id = found.remote_id
        response = await send(
            self._http,
            conn,
            "delete contact",
            "DELETE",
            f"{conn.base_url}{CONTACTS}/{remote_id}",
            headers=self._headers(conn),
            allow=(404,),
        )
        return response.status_code != 404

    async def add_note(
        self, conn: Connection, lead: LeadSnapshot, remote_id: str, text: str
    ) -> str | None:
        response = await send(
            self._http,
            conn,
            "add note",
            "POST",
            f"{conn.base_url}{NOTES}",
            json={
                "properties": {
                    "hs_note_body": text,
                    "hs_timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
                },
                "associations": [
                    {
                        "to": {"id": remote_id},
                        "types": [
                            {
                                "associationCategory": "HUBSPOT_DEFINED",
                                "associationTypeId": NOTE_TO_CONTACT_ASSOCIATION,
                            }
                        ],
                    }
                ],
            },
            headers=self._headers(conn),
        )
        note_id = body_of(response).get("id")
        return str(note_id) if note_id is not None else None

    async def test_connection(self, conn: Connection) -> str:
        await send(
            self._http,
            conn,
            "test connection",
            "GET",
            f"{conn.base_url}{CONTACTS}",
            params={"limit": "1"},
            headers=self._headers(conn),
        )
        return f"HubSpot contacts API reachable at {conn.base_url}"
