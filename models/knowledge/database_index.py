"""The embedded search backend: the database's own tables are the index (SQLite FTS5 or
PostgreSQL full text for documents, SQL filters for items), so writes have nothing to mirror."""

from __future__ import annotations

from collections.abc import Sequence

from models.db import Database
from models.inventory import InventoryItem, InventoryQuery
from models.knowledge.index import DocumentMatch, IndexedDocument, ItemMatch
from models.repo import inventory as inventory_repo
from models.repo import knowledge as knowledge_repo


class DatabaseIndex:
    name = "database"
    mirrors = False  # the canonical rows are searched directly: nothing to push

    def __init__(self, db: Database) -> None:
        self._db = db

    async def check(self) -> None:
        await self._db.ping()

    async def upsert_documents(self, tenant_id: str, documents: Sequence[IndexedDocument]) -> None:
        return None

    async def delete_documents(self, tenant_id: str, document_ids: Sequence[str]) -> None:
        return None

    async def upsert_items(self, tenant_id: str, items: Sequence[InventoryItem]) -> None:
        return None

    async def delete_items(self, tenant_id: str, keys: Sequence[str]) -> None:
        return None

    async def search_documents(self, tenant_id: str, query: str, limit: int) -> list[DocumentMatch]:
        async with self._db.session() as session:
            hits = await knowledge_repo.search(
                session, tenant_id=tenant_id, query=query, limit=limit
            )
        return [
            DocumentMatch(document_id=h.document_id, snippet=h.snippet, score=h.score) for h in hits
        ]

    async def search_items(self, tenant_id: str, query: InventoryQuery) -> list[ItemMatch]:
        async with self._db.session() as session:
            hits = await inventory_repo.search(session, tenant_id=tenant_id, query=query)
        return [ItemMatch(key=h.item.key, score=h.score) for h in hits]

    async def drop_tenant(self, tenant_id: str) -> None:
        return None  # the tenant's rows go with the tenant (models/erasure.py)

    async def close(self) -> None:
        return None
