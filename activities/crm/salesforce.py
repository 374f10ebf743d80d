"""Salesforce REST: OAuth client-credentials token (cached, refreshed on INVALID_SESSION_ID),
Lead upsert by an external-id field, a Task for the activity."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
from temporalio.exceptions import ApplicationError

from activities.crm.base import (
    AUTH_ERROR,
    Connection,
    RemoteRecord,
    UpsertResult,
    body_of,
    error_message,
    raise_for_response,
    send,
)
from models.crm import CrmKind, LeadSnapshot

DEFAULT_API_VERSION = "v60.0"
DEFAULT_EXTERNAL_ID_FIELD = "Leadflow_Id__c"
DEFAULT_COMPANY = "[not provided]"  # Lead.Company is required on create


@dataclass(frozen=True)
class _Token:
    access_token: str
    instance_url: str


class SalesforceAdapter:
    kind: ClassVar[CrmKind] = CrmKind.SALESFORCE
    # Salesforce limits per day (Sforce-Limit-Info), not per second
    min_interval_seconds: ClassVar[float] = 0.0

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http
        self._tokens: dict[str, _Token] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    # ---- auth ----------------------------------------------------------------------------

    async def _token(self, conn: Connection, *, refresh: bool = False) -> _Token:
        lock = self._locks.setdefault(conn.integration_id, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(conn.integration_id)
            if cached is not None and not refresh:
                return cached
            response = await send(
                self._http,
                conn,
                "get OAuth token",
                "POST",
                f"{conn.base_url}/services/oauth2/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": str(conn.credentials.get("client_id", "")),
                    "client_secret": str(conn.credentials.get("client_secret", "")),
                },
                allow=(400, 401),
            )
            if response.status_code in (400, 401):
                raise ApplicationError(
                    f"{conn.label()} OAuth token refused: {error_message(response)}",
                    type=AUTH_ERROR,
                    non_retryable=True,
                )
            body = body_of(response)
            token = _Token(
                access_token=str(body["access_token"]),
                instance_url=str(body.get("instance_url") or conn.base_url).rstrip("/"),
            )
            self._tokens[conn.integration_id] = token
            return token

    async def _call(
        self,
        conn: Connection,
        action: str,
        method: str,
        path: str,
        *,
        allow: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> httpx.Response:
        """A REST call with the cached token; one refresh on 401 INVALID_SESSION_ID."""
        version = str(conn.credentials.get("api_version") or DEFAULT_API_VERSION)
        for attempt in (0, 1):
            token = await self._token(conn, refresh=attempt == 1)
            response = await send(
                self._http,
                conn,
                action,
                method,
                f"{token.instance_url}/services/data/{version}{path}",
                headers={"Authorization": f"Bearer {token.access_token}"},
                allow=(*allow, 401),
                **kwargs,
            )
            if response.status_code == 401 and attempt == 0 and _invalid_session(response):
                continue
            if response.status_code == 401 and 401 not in allow:
                raise_for_response(response, conn, action)
            return response
        raise AssertionError("unreachable")

    # ---- the Lead ------------------------------------------------------------------------

    def _ext(self, conn: Connection) -> str:
        return str(conn.credentials.get("external_id_field") or DEFAULT_EXTERNAL_ID_FIELD)

    def _by_ext(self, conn: Connection, lead: LeadSnapshot) -> str:
        return f"/sobjects/Lead/{self._ext(conn)}/{quote(lead.lead_id, safe='')}"

    async def read(
        self, conn: Connection, lead: LeadSnapshot, remote_id: str | None
    ) -> RemoteRecord | None:
        props = sorted(set(conn.mapping.values()))
        path = f"/sobjects/Lead/{remote_id}" if remote_id else self._by_ext(conn, lead)
        response = await self._call(
            conn,
            "read Lead",
            "GET",
            path,
            params={"fields": ",".join(["Id", *props])},
            allow=(404,),
        )
        if response.status_code == 404:
            if remote_id:
                return await self.read(conn, lead, None)
            return None
        body = body_of(response)
        return RemoteRecord(remote_id=str(body["Id"]), values={p: body.get(p) for p in props})

    async def upsert(
        self, conn: Connection, lead: LeadSnapshot, remote_id: str | None, values: dict[str, Any]
    ) -> UpsertResult:
        body = dict(values)
        if remote_id is None:
            # required on create; harmless on the update an upsert may turn into
            body.setdefault("LastName", lead.last_name or lead.name or lead.address)
            body.setdefault(
                "Company", str(conn.credentials.get("default_company") or DEFAULT_COMPANY)
            )
        # upsert by external id = leadflow's lead id: a retried create matches the first one
        response = await self._call(
            conn, "upsert Lead", "PATCH", self._by_ext(conn, lead), json=body
        )
        answer = body_of(response)
        if answer.get("id"):
            created = bool(answer.get("created", response.status_code == 201))
            return UpsertResult(str(answer["id"]), created=created, written=body)
        # old API versions answer 204 without a body: look the Id up
        found = await self.read(conn, lead, None)
        if found is None:
            raise ApplicationError(f"{conn.label()} upsert Lead: no record after upsert")
        return UpsertResult(found.remote_id, created=response.status_code == 201, written=body)

    async def restore(
        self,
        conn: Connection,
        lead: LeadSnapshot,
        remote_id: str,
        previous: dict[str, Any],
        previous_extra: dict[str, Any],
    ) -> None:
        await self._call(
            conn, "restore Lead", "PATCH", f"/sobjects/Lead/{remote_id}", json=previous
        )

    async def delete(
        self,
        conn: Connection,
        lead: LeadSnapshot,
        remote_id: str | None,
        created_extra: dict[str, Any],
    ) -> bool:
        path = f"/sobjects/Lead/{remote_id}" if remote_id else self._by_ext(conn, lead)
        response = await self._call(conn, "delete Lead", "DELETE", path, allow=(404,))
        return response.status_code != 404

    async def add_note(
        self, conn: Connection, lead: LeadSnapshot, remote_id: str, text: str
    ) -> str | None:
        response = await self._call(
            conn,
            "create Task",
            "POST",
            "/sobjects/Task/",
            json={
                "WhoId": remote_id,
                "Subject": "leadflow conversation",
                "Description": text,
                "Status": "Completed",
                "ActivityDate": datetime.now(UTC).date().isoformat(),
            },
        )
        task_id = body_of(response).get("id")
        return str(task_id) if task_id else None

    async def test_connection(self, conn: Connection) -> str:
        token = await self._token(conn, refresh=True)
        await self._call(conn, "test connection", "GET", "/limits")
        return f"Salesforce REST reachable at {token.instance_url}"


def _invalid_session(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return True
    if isinstance(body, list) and body and isinstance(body[0], dict):
        return body[0].get("errorCode") == "INVALID_SESSION_ID"
    return True
