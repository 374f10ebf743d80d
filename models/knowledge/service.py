"""The one place for knowledge and inventory rules, called by the API, the CLI and the activities:
documents in and out, items applied with what changed, searches through the configured backend,
and a lead's wish answered with matches or the nearest alternatives.

The database keeps the canonical copy; the backend (`KnowledgeIndex`) searches. Every write goes
to the database first and then to the backend; rows the backend has not taken stay marked and
are pushed again on the next write or `sync_index` (so a Weaviate outage delays, never loses, an
update, and a removed car is never offered again once the backend is back)."""

from __future__ import annotations

from collections.abc import Sequence

from models.agent import KnowledgeHit
from models.db import Database
from models.inventory import (
    IngestDiff,
    InventoryAnswer,
    InventoryItem,
    InventoryQuery,
    ItemHit,
    relaxations,
)
from models.knowledge.database_index import DatabaseIndex
from models.knowledge.index import (
    IndexedDocument,
    KnowledgeBackendError,
    KnowledgeBackendUnavailable,
    KnowledgeIndex,
)
from models.repo import inventory as inventory_repo
from models.repo import knowledge as knowledge_repo
from models.settings import Settings
from models.tables import KnowledgeDocument

SYNC_BATCH = 200


class IndexPending(KnowledgeBackendUnavailable):
    """The database took the write (`diff`) but the search backend did not: the rows stay
    pending and are pushed on the next write or `sync_index`. Callers that can report the diff
    with the backend's `reason` (the API's 202) catch this; to the others it is the backend
    being unavailable, as before."""

    def __init__(self, diff: IngestDiff, reason: KnowledgeBackendError) -> None:
        super().__init__(f"stored; the search index is pending: {reason}")
        self.diff = diff
        self.reason = str(reason)


def mirrors(index: KnowledgeIndex) -> bool:
    """Whether the backend keeps its own copy (Weaviate) or searches the rows (the database)."""
    return bool(getattr(index, "mirrors", True))


class KnowledgeService:
    def __init__(self, db: Database, index: KnowledgeIndex) -> None:
        self._db = db
        self.index = index

    @property
    def backend(self) -> str:
        return self.index.name

    # ---- documents ---------------------------------------------------------------------------

    async def add_document(self, *, tenant_id: str, title: str, body: str) -> KnowledgeDocument:
        async with self._db.session() as session:
            doc = await knowledge_repo.add_document(
                session, tenant_id=tenant_id, title=title, body=body
            )
        try:
            await self.index.upsert_documents(
                tenant_id, [IndexedDocument(document_id=doc.id, title=title, body=body)]
            )
        except BaseException:
            # Not searchable, so not kept: the caller gets the backend's error and can retry.
            async with self._db.session() as session:
                await knowledge_repo.delete_document(
                    session, tenant_id=tenant_id, document_id=doc.id
                )
            raise
        return doc

    async def delete_document(self, *, tenant_id: str, document_id: str) -> bool:
        await self.index.delete_documents(tenant_id, [document_id])
        async with self._db.session() as session:
            return await knowledge_repo.delete_document(
                session, tenant_id=tenant_id, document_id=document_id
            )

    async def list_documents(self, *, tenant_id: str) -> list[KnowledgeDocument]:
        async with self._db.session() as session:
            return await knowledge_repo.list_documents(session, tenant_id=tenant_id)

    async def search_documents(
        self, *, tenant_id: str, query: str, limit: int = 3
    ) -> list[KnowledgeHit]:
        """The documents best matching `query`, best first, with their best passage. Hits
        whose document is gone from the database are dropped."""
        if not knowledge_repo.query_terms(query) or limit <= 0:
            return []
        matches = await self.index.search_documents(tenant_id, query, limit)
        if not matches:
            return []
        async with self._db.session() as session:
            docs = await knowledge_repo.documents_by_id(
                session, tenant_id=tenant_id, document_ids=[m.document_id for m in matches]
            )
        titles = {d.document_id: d.title for d in docs}
        hits: list[KnowledgeHit] = []
        for match in matches:
            if match.document_id in titles and all(
                h.document_id != match.document_id for h in hits
            ):
                hits.append(
                    KnowledgeHit(
                        document_id=match.document_id,
                        title=titles[match.document_id],
                        snippet=match.snippet,
                        score=match.score,
                    )
                )
        return hits

    # ---- items -------------------------------------------------------------------------------

    async def apply_items(
        self,
        *,
        tenant_id: str,
        items: Sequence[InventoryItem],
        source_id: str = "api",
        replace: bool,
    ) -> IngestDiff:
        """Upsert `items`; with `replace`, the source's items not among them are removed (stop
        being offered). Then the backend takes what changed."""
        direct = not mirrors(self.index)
        async with self._db.session() as session:
            diff = await inventory_repo.apply_items(
                session,
                tenant_id=tenant_id,
                source_id=source_id,
                items=items,
                replace=replace,
                indexed=direct,
            )
            await session.commit()
        if not direct:
            try:
                await self.sync_index(tenant_id=tenant_id)
            except KnowledgeBackendError as exc:
                raise IndexPending(diff, exc) from exc
        return diff

    async def remove_item(self, *, tenant_id: str, key: str) -> bool:
        direct = not mirrors(self.index)
        async with self._db.session() as session:
            removed = await inventory_repo.remove_item(
                session, tenant_id=tenant_id, key=key, indexed=direct
            )
            await session.commit()
        if removed and not direct:
            try:
                await self.sync_index(tenant_id=tenant_id)
            except KnowledgeBackendError as exc:
                raise IndexPending(IngestDiff(removed=1, removed_keys=(key,)), exc) from exc
        return removed

    async def sync_index(self, *, tenant_id: str) -> int:
        """Push the rows the backend has not taken (upserts and removals); returns how many.
        Raises the backend's error, leaving the rest pending."""
        if not mirrors(self.index):
            return 0
        pushed = 0
        while True:
            async with self._db.session() as session:
                upserts, forgets = await inventory_repo.pending(
                    session, tenant_id=tenant_id, limit=SYNC_BATCH
                )
            if not upserts and not forgets:
                return pushed
            if upserts:
                await self.index.upsert_items(tenant_id, [item for item, _ in upserts])
            if forgets:
                await self.index.delete_items(tenant_id, forgets)
            async with self._db.session() as session:
                await inventory_repo.mark_indexed(
                    session,
                    tenant_id=tenant_id,
                    versions=[(item.key, content_hash) for item, content_hash in upserts],
                )
                await inventory_repo.purge_forgotten(session, tenant_id=tenant_id, keys=forgets)
                await session.commit()
            pushed += len(upserts) + len(forgets)

    async def reindex(self, *, tenant_id: str) -> tuple[int, int]:
        """Push every document and live item of the tenant to the backend again (a new, emptied
        or dropped Weaviate; a changed embedding model after `drop_tenant`). Returns (documents,
        items) pushed."""
        if not mirrors(self.index):
            return 0, 0
        documents = await self.list_documents(tenant_id=tenant_id)
        for start in range(0, len(documents), SYNC_BATCH):
            await self.index.upsert_documents(
                tenant_id,
                [
                    IndexedDocument(document_id=d.id, title=d.title, body=d.body)
                    for d in documents[start : start + SYNC_BATCH]
                ],
            )
        async with self._db.session() as session:
            await inventory_repo.mark_all_pending(session, tenant_id=tenant_id)
            await session.commit()
        return len(documents), await self.sync_index(tenant_id=tenant_id)

    async def search_items(self, *, tenant_id: str, query: InventoryQuery) -> list[ItemHit]:
        """The backend's ranking, each item read back from the database and checked against
        the query (a backend that lags behind never offers a sold or changed car)."""
        matches = await self.index.search_items(tenant_id, query)
        if not matches:
            return []
        async with self._db.session() as session:
            items = await inventory_repo.by_keys(
                session, tenant_id=tenant_id, keys=[m.key for m in matches]
            )
        hits: list[ItemHit] = []
        for match in matches:
            item = items.get(match.key)
            if (
                item is not None
                and query.matches(item)
                and all(h.item.key != item.key for h in hits)
            ):
                hits.append(ItemHit(item=item, score=match.score))
        return hits[: query.limit]

    async def has_stock(self, *, tenant_id: str) -> bool:
        """Whether the tenant offers any car at all: only a business with stock may tell a lead
        "not in stock". The backend's answer alone (one statement or request)."""
        return bool(await self.index.search_items(tenant_id, InventoryQuery(limit=1)))

    async def items_by_key(
        self, *, tenant_id: str, keys: Sequence[str]
    ) -> tuple[InventoryItem, ...]:
        """Live items with these keys, in the order asked (gone ones left out)."""
        async with self._db.session() as session:
            items = await inventory_repo.by_keys(session, tenant_id=tenant_id, keys=keys)
        return tuple(items[k] for k in dict.fromkeys(keys) if k in items)

    async def answer_wish(self, *, tenant_id: str, wish: InventoryQuery) -> InventoryAnswer:
        """The items matching a lead's wish; when none do, the nearest alternatives (each wish
        given up in turn, `models.inventory.relaxations`) and what they give up."""
        matches = await self.search_items(tenant_id=tenant_id, query=wish)
        if matches:
            return InventoryAnswer(query=wish, matches=tuple(matches))
        for dropped, relaxed in relaxations(wish):
            alternatives = await self.search_items(tenant_id=tenant_id, query=relaxed)
            if alternatives:
                return InventoryAnswer(
                    query=wish, alternatives=tuple(alternatives), relaxed=dropped
                )
        return InventoryAnswer(query=wish)


def build_index(settings: Settings, db: Database) -> KnowledgeIndex:
    """The backend the settings choose: Weaviate when LEADFLOW_WEAVIATE_URL is set, else the
    database."""
    if not settings.weaviate_url:
        return DatabaseIndex(db)
    # Imported here: the database-only deployment never loads weaviate-client and gRPC.
    from models.knowledge.weaviate_setup import weaviate_index

    return weaviate_index(settings, db)
