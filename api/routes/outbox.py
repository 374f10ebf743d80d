"""The outbox: every message leadflow sent or, with no channel configured, stored."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.deps import CurrentTenant, Session
from models.repo import outbox as repo

router = APIRouter(prefix="/api/v1/outbox", tags=["outbox"])


class OutboxView(BaseModel):
    id: int
    conversation_id: str | None
    channel: str
    to: str
    text: str
    status: str
    delivered_via: str | None
    created_at: datetime
    sent_at: datetime | None


@router.get("")
async def list_outbox(
    tenant: CurrentTenant,
    session: Session,
    conversation_id: str | None = None,
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[OutboxView]:
    rows = await repo.list_outbox(
        session, tenant_id=tenant.id, conversation_id=conversation_id, status=status, limit=limit
    )
    return [
        OutboxView(
            id=r.id or 0,
            conversation_id=r.conversation_id,
            channel=r.channel,
            to=r.to,
            text=r.text,
            status=r.status,
            delivered_via=r.delivered_via,
            created_at=r.created_at,
            sent_at=r.sent_at,
        )
        for r in rows
    ]
