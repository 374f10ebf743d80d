"""Knowledge search over the tenant's documents, through the configured backend
(models/knowledge/service.py: the database's full-text search, or Weaviate)."""

from __future__ import annotations

from temporalio import activity

from models.agent import KnowledgeHit, SearchKnowledgeInput
from models.knowledge.service import KnowledgeService


class KnowledgeActivities:
    def __init__(self, knowledge: KnowledgeService) -> None:
        self._knowledge = knowledge

    @activity.defn
    async def search_knowledge(self, request: SearchKnowledgeInput) -> tuple[KnowledgeHit, ...]:
        """The tenant's documents that best match the query, best first."""
        if not request.query.strip():
            return ()
        hits = await self._knowledge.search_documents(
            tenant_id=request.tenant_id, query=request.query, limit=request.limit
        )
        return tuple(hits)
