"""The tenant's knowledge base, searched by every conversation turn."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field

from api.deps import CurrentTenant, Session
from api.errors import ApiError
from api.responses import errors
from models.agent import KnowledgeHit
from models.repo import knowledge as repo

router = APIRouter(prefix="/api/v1/knowledge", tags=["knowledge"])


class NewDocument(BaseModel):
    title: str = Field(min_length=1, max_length=300)
    body: str = Field(min_length=1, max_length=200_000)


class DocumentView(BaseModel):
    id: str
    title: str
    created_at: datetime
    chars: int


@router.post("", status_code=status.HTTP_201_CREATED)
async def add_document(body: NewDocument, tenant: CurrentTenant, session: Session) -> DocumentView:
    doc = await repo.add_document(session, tenant_id=tenant.id, title=body.title, body=body.body)
    return DocumentView(id=doc.id, title=doc.title, created_at=doc.created_at, chars=len(doc.body))


@router.get("")
async def list_documents(tenant: CurrentTenant, session: Session) -> list[DocumentView]:
    return [
        DocumentView(id=d.id, title=d.title, created_at=d.created_at, chars=len(d.body))
        for d in await repo.list_documents(session, tenant_id=tenant.id)
    ]


@router.get("/search")
async def search(
    tenant: CurrentTenant,
    session: Session,
    q: Annotated[str, Query(min_length=1, max_length=500)],
    limit: Annotated[int, Query(ge=1, le=20)] = 5,
) -> list[KnowledgeHit]:
    return await repo.search(session, tenant_id=tenant.id, query=q, limit=limit)


@router.delete("/{document_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404))
async def delete_document(document_id: str, tenant: CurrentTenant, session: Session) -> None:
    if not await repo.delete_document(session, tenant_id=tenant.id, document_id=document_id):
        raise ApiError(404, "document not found", document_id)
