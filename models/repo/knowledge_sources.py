"""SQL of inventory sources (`knowledge_sources`): the spec a tenant configured and what its last
ingestion run did."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.knowledge_sources import SourceSpec
from models.knowledge_tables import KnowledgeSourceRow

MAX_ERROR_CHARS = 2000


def new_source_id() -> str:
    return f"src{uuid.uuid4().hex[:16]}"


def spec_of(row: KnowledgeSourceRow) -> SourceSpec:
    return SourceSpec.model_validate(row.spec)


async def create_source(
    session: AsyncSession, *, tenant_id: str, spec: SourceSpec, source_id: str | None = None
) -> KnowledgeSourceRow:
    row = KnowledgeSourceRow(
        id=source_id or new_source_id(),
        tenant_id=tenant_id,
        name=spec.name,
        spec=spec.model_dump(mode="json"),
    )
    session.add(row)
    await session.commit()
    await session.refresh(row)
    return row


async def get_source(
    session: AsyncSession, *, tenant_id: str, source_id: str
) -> KnowledgeSourceRow | None:
    row = await session.get(KnowledgeSourceRow, source_id)
    # Another tenant's source is "not found", never "forbidden": ids are not confirmed.
    return row if row is not None and row.tenant_id == tenant_id else None


async def list_sources(session: AsyncSession, *, tenant_id: str) -> list[KnowledgeSourceRow]:
    rows = await session.exec(
        select(KnowledgeSourceRow)
        .where(col(KnowledgeSourceRow.tenant_id) == tenant_id)
        .order_by(col(KnowledgeSourceRow.created_at), col(KnowledgeSourceRow.id))
    )
    return list(rows.all())


async def update_spec(
    session: AsyncSession, *, row: KnowledgeSourceRow, spec: SourceSpec
) -> KnowledgeSourceRow:
    row.spec = spec.model_dump(mode="json")
    row.name = spec.name
    row.updated_at = datetime.now(UTC)
    session.add(row)
    await session.commit()
    await session.refresh(row)
    return row


async def delete_source(session: AsyncSession, *, tenant_id: str, source_id: str) -> bool:
    row = await get_source(session, tenant_id=tenant_id, source_id=source_id)
    if row is None:
        return False
    await session.delete(row)
    await session.commit()
    return True


async def record_success(
    session: AsyncSession, *, tenant_id: str, source_id: str, result: dict[str, Any]
) -> None:
    """A run finished: its result is the source's last result, and no error stands."""
    row = await get_source(session, tenant_id=tenant_id, source_id=source_id)
    if row is None:
        return  # deleted while the run was going: nothing to record on
    row.last_run_at = datetime.now(UTC)
    row.last_result = result
    row.last_error = None
    session.add(row)
    await session.commit()


async def record_failure(
    session: AsyncSession, *, tenant_id: str, source_id: str, error: str
) -> None:
    """A run (or an attempt) failed. The last good result stays: it is what is in stock."""
    row = await get_source(session, tenant_id=tenant_id, source_id=source_id)
    if row is None:
        return
    row.last_run_at = datetime.now(UTC)
    row.last_error = error[:MAX_ERROR_CHARS]
    session.add(row)
    await session.commit()
