"""Knowledge search over the tenant's documents (embedded full-text search, see models/repo)."""

from __future__ import annotations

from temporalio import activity

from models.agent import KnowledgeHit, SearchKnowledgeInput
from models.db import Database
from models.repo import knowledge as knowledge_repo


class KnowledgeActivities:
    def __init__(self, db: Database) -> None:
        self._db = db

    @activity.defn
    async def search_knowledge(self, request: SearchKnowledgeInput) -> tuple[KnowledgeHit, ...]:
        """The tenant's documents that best match the query, best first."""
        if not request.query.strip():
            return ()
        async with self._db.session() as session:
            hits = await knowledge_repo.search(
                session, tenant_id=request.tenant_id, query=request.query, limit=request.limit
            )
        return tuple(hits)
