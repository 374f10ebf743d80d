"""The tenant's knowledge base, searched by every conversation turn: documents through the
knowledge service, so they are searched by the configured backend (the database's full text,
or Weaviate) and the search here answers what the agent would find, with scores."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field

from api.deps import CurrentTenant, Knowledge
from api.errors import ApiError
from api.responses import errors
from models.agent import KnowledgeHit

router = APIRouter(prefix="/api/v1/knowledge", tags=["knowledge"])


class NewDocument(BaseModel):
    title: str = Field(min_length=1, max_length=300)
    body: str = Field(min_length=1, max_length=200_000)


class DocumentView(BaseModel):
    id: str
    title: str
    created_at: datetime
    chars: int


BACKEND_DOWN = errors(503, _503="The configured search backend is unreachable.")


@router.post("", status_code=status.HTTP_201_CREATED, responses=BACKEND_DOWN)
async def add_document(
    body: NewDocument, tenant: CurrentTenant, knowledge: Knowledge
) -> DocumentView:
    """Stored and indexed, or neither (a backend that refuses it leaves nothing behind)."""
    doc = await knowledge.add_document(tenant_id=tenant.id, title=body.title, body=body.body)
    return DocumentView(id=doc.id, title=doc.title, created_at=doc.created_at, chars=len(doc.body))


@router.get("")
async def list_documents(tenant: CurrentTenant, knowledge: Knowledge) -> list[DocumentView]:
    return [
        DocumentView(id=d.id, title=d.title, created_at=d.created_at, chars=len(d.body))
        for d in await knowledge.list_documents(tenant_id=tenant.id)
    ]


@router.get("/search", responses=BACKEND_DOWN)
async def search(
    tenant: CurrentTenant,
    knowledge: Knowledge,
    q: Annotated[str, Query(min_length=1, max_length=500)],
    limit: Annotated[int, Query(ge=1, le=20)] = 5,
) -> list[KnowledgeHit]:
    """What the agent would find: documents best first, each with its best passage and score
    (comparable within one answer)."""
    return await knowledge.search_documents(tenant_id=tenant.id, query=q, limit=limit)


@router.delete(
    "/{document_id}", status_code=status.HTTP_204_NO_CONTENT, responses={**errors(404, 503)}
)
async def delete_document(document_id: str, tenant: CurrentTenant, knowledge: Knowledge) -> None:
    if not await knowledge.delete_document(tenant_id=tenant.id, document_id=document_id):
        raise ApiError(404, "document not found", document_id)
