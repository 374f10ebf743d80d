"""Pipedrive: person upsert (v2) and a lead or deal for a new person; api token or OAuth."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from activities.crm.base import Connection, RemoteRecord, UpsertResult, body_of, send
from models.crm import PIPEDRIVE_MARKETING_STATUS, CrmKind, LeadSnapshot

PERSONS = "/api/v2/persons"
STANDARD = ("name", "email", "phone")


def _primary(items: Any) -> Any:
    if not isinstance(items, list) or not items:
        return None
    for item in items:
        if isinstance(item, dict) and item.get("primary") in (True, "true"):
            return item.get("value")
    first = items[0]
    return first.get("value") if isinstance(first, dict) else first


def _marketing_status(value: Any) -> str | None:
    """The person's marketing status for a mapped value: do-not-contact true is "unsubscribed";
    false writes nothing (a lifted opt-out is not consent to marketing: Pipedrive keeps what it
    has); a status read earlier (a compensation restoring it) is written back as it was."""
    if value is True:
        return "unsubscribed"
    if isinstance(value, str) and value:
        return value
    return None


class PipedriveAdapter:
    kind: ClassVar[CrmKind] = CrmKind.PIPEDRIVE
    # token-based budgets per 2 s window; 10/s keeps a single tenant well inside them
    min_interval_seconds: ClassVar[float] = 0.1

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    def _headers(self, conn: Connection) -> dict[str, str]:
        # "If both API token and OAuth access token are set, then the API token takes precedence."
        token = conn.credentials.get("api_token")
        if token:
            return {"x-api-token": str(token)}
        return {"Authorization": f"Bearer {conn.credentials.get('access_token', '')}"}

    def _values(self, person: dict[str, Any], props: list[str]) -> dict[str, Any]:
        custom = person.get("custom_fields") or {}
        values: dict[str, Any] = {}
        for prop in props:
            if prop == "name":
                values[prop] = person.get("name")
            elif prop == "email":
                values[prop] = _primary(person.get("emails") or person.get("email"))
            elif prop == "phone":
                values[prop] = _primary(person.get("phones") or person.get("phone"))
            else:
                raw = custom.get(prop, person.get(prop))
                values[prop] = raw.get("value") if isinstance(raw, dict) else raw
        return values

    def _body(self, values: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {}
        custom: dict[str, Any] = {}
        for prop, value in values.items():
            if prop == "name":
                body["name"] = value
            elif prop == "email":
                body["emails"] = (
                    [{"value": value, "primary": True, "label": "work"}] if value else []
                )
            elif prop == "phone":
                body["phones"] = (
                    [{"value": value, "primary": True, "label": "mobile"}] if value else []
                )
            elif prop == PIPEDRIVE_MARKETING_STATUS:
                status = _marketing_status(value)
                if status is not None:
                    body[prop] = status
            else:
                custom[prop] = value
        if custom:
            body["custom_fields"] = custom
        return body

    async def _get(self, conn: Connection, person_id: str) -> dict[str, Any] | None:
        response = await send(
            self._http,
            conn,
            "read person",
            "GET",
            f"{conn.base_url}{PERSONS}/{person_id}",
            headers=self._headers(conn),
            allow=(404, 410),
        )
        if response.status_code in (404, 410):
            return None
        data = body_of(response).get("data")
        return data if isinstance(data, dict) else None

    async def _search(self, conn: Connection, term: str, field: str) -> str | None:
        response = await send(
            self._http,
            conn,
            f"search person by {field}",
            "GET",
            f"{conn.base_url}{PERSONS}/search",
            params={"term": term, "fields": field, "exact_match": "true", "limit": "1"},
            headers=self._headers(conn),
        )
        items = (body_of(response).get("data") or {}).get("items") or []
        for entry in items:
            item = entry.get("item") if isinstance(entry, dict) else None
            if isinstance(item, dict) and item.get("id") is not None:
                return str(item["id"])
        return None

    async def _find(self, conn: Connection, lead: LeadSnapshot) -> str | None:
        if lead.email:
            found = await self._search(conn, lead.email, "email")
            if found:
                return found
        if lead.phone:
            return await self._search(conn, lead.phone, "phone")
        return None

    async def read(
        self, conn: Connection, lead: LeadSnapshot, remote_id: str | None
    ) -> RemoteRecord | None:
        props = sorted(set(conn.mapping.values()))
        person_id = remote_id or await self._find(conn, lead)
        person = await self._get(conn, person_id) if person_id else None
        if person is None and remote_id:
            person_id = await self._find(conn, lead)
            person = await self._get(conn, person_id) if person_id else None
        if person is None or person_id is None:
            return None
        return RemoteRecord(remote_id=person_id, values=self._values(person, props))

    async def upsert(
        self, conn: Connection, lead: LeadSnapshot, remote_id: str | None, values: dict[str, Any]
    ) -> UpsertResult:
        body = self._body(values)
        # a retried create must find the person the first attempt made
        person_id = remote_id or await self._find(conn, lead)
        if person_id:
            await send(
                self._http,
                conn,
                "update person",
                "PATCH",
                f"{conn.base_url}{PERSONS}/{person_id}",
                json=body,
                headers=self._headers(conn),
            )
            return UpsertResult(person_id, created=False, written=values)
        body.setdefault("name", lead.name or lead.email or lead.phone or lead.address)
        response = await send(
            self._http,
            conn,
            "create person",
            "POST",
            f"{conn.base_url}{PERSONS}",
            json=body,
            headers=self._headers(conn),
        )
        person_id = str(body_of(response)["data"]["id"])
        extra = await self._create_opportunity(conn, lead, person_id, str(body["name"]))
        return UpsertResult(person_id, created=True, written=values, extra=extra)

    async def _create_opportunity(
        self, conn: Connection, lead: LeadSnapshot, person_id: str, name: str
    ) -> dict[str, Any]:
        """A new person also gets a Pipedrive lead (default) or deal, per the connection."""
        what = str(conn.credentials.get("create") or "lead")
        title = f"{name} (leadflow)"
        if what == "deal":
            response = await send(
                self._http,
                conn,
                "create deal",
                "POST",
                f"{conn.base_url}/api/v2/deals",
                json={"title": title, "person_id": int(person_id)},
                headers=self._headers(conn),
            )
            return {"deal_id": str(body_of(response)["data"]["id"])}
        if what == "lead":
            response = await send(
                self._http,
                conn,
                "create lead",
                "POST",
                f"{conn.base_url}/v1/leads",
                json={"title": title, "person_id": int(person_id)},
                headers=self._headers(conn),
            )
            return {"lead_id": str(body_of(response)["data"]["id"])}
        return {}

    async def restore(
        self,
        conn: Connection,
        lead: LeadSnapshot,
        remote_id: str,
        previous: dict[str, Any],
        previous_extra: dict[str, Any],
    ) -> None:
        await send(
            self._http,
            conn,
            "restore person",
            "PATCH",
            f"{conn.base_url}{PERSONS}/{remote_id}",
            json=self._body(previous),
            headers=self._headers(conn),
        )

    async def delete(
        self,
        conn: Connection,
        lead: LeadSnapshot,
        remote_id: str | None,
        created_extra: dict[str, Any],
    ) -> bool:
        if created_extra.get("lead_id"):
            await send(
                self._http,
                conn,
                "delete lead",
                "DELETE",
                f"{conn.base_url}/v1/leads/{created_extra['lead_id']}",
                headers=self._headers(conn),
                allow=(404, 410),
            )
        if created_extra.get("deal_id"):
            await send(
                self._http,
                conn,
                "delete deal",
                "DELETE",
                f"{conn.base_url}/api/v2/deals/{created_extra['deal_id']}",
                headers=self._headers(conn),
                allow=(404, 410),
            )
        person_id = remote_id or await self._find(conn, lead)
        if not person_id:
            return False
        response = await send(
            self._http,
            conn,
            "delete person",
            "DELETE",
            f"{conn.base_url}{PERSONS}/{person_id}",
            headers=self._headers(conn),
            allow=(404, 410),
        )
        return response.status_code < 400

    async def add_note(
        self, conn: Connection, lead: LeadSnapshot, remote_id: str, text: str
    ) -> str | None:
        response = await send(
            self._http,
            conn,
            "add note",
            "POST",
            f"{conn.base_url}/v1/notes",
            json={"content": text, "person_id": int(remote_id)},
            headers=self._headers(conn),
        )
        note = body_of(response).get("data") or {}
        return str(note["id"]) if isinstance(note, dict) and note.get("id") else None

    async def test_connection(self, conn: Connection) -> str:
        await send(
            self._http,
            conn,
            "test connection",
            "GET",
            f"{conn.base_url}/v1/users/me",
            headers=self._headers(conn),
        )
        return f"Pipedrive API reachable at {conn.base_url}"
