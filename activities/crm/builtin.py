"""The built-in lead table as the embedded CRM: the lead already lives there, so a sync only
records that this version is the synced one (the link row written by `record_crm_sync`)."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from activities.crm.base import Connection, RemoteRecord, UpsertResult
from models.crm import CrmKind, LeadSnapshot


class BuiltinAdapter:
    kind: ClassVar[CrmKind] = CrmKind.BUILTIN
    min_interval_seconds: ClassVar[float] = 0.0

    def __init__(self, http: httpx.AsyncClient) -> None:
        del http  # no remote system

    async def read(
        self, conn: Connection, lead: LeadSnapshot, remote_id: str | None
    ) -> RemoteRecord | None:
        return RemoteRecord(remote_id=lead.lead_id, values={})

    async def upsert(
        self, conn: Connection, lead: LeadSnapshot, remote_id: str | None, values: dict[str, Any]
    ) -> UpsertResult:
        return UpsertResult(lead.lead_id, created=False, written={})

    async def restore(
        self,
        conn: Connection,
        lead: LeadSnapshot,
        remote_id: str,
        previous: dict[str, Any],
        previous_extra: dict[str, Any],
    ) -> None:
        return None

    async def delete(
        self,
        conn: Connection,
        lead: LeadSnapshot,
        remote_id: str | None,
        created_extra: dict[str, Any],
    ) -> bool:
        return False

    async def add_note(
        self, conn: Connection, lead: LeadSnapshot, remote_id: str, text: str
    ) -> str | None:
        return None

    async def test_connection(self, conn: Connection) -> str:
        return "built-in lead table (always available)"
