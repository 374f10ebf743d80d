"""WAHA @lid -> phone mappings (models/identity_tables.py WahaLid), one row per tenant and lid."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.identity_tables import WahaLid
from models.repo.sql import insert, table_of

_TABLE = table_of(WahaLid)


async def phone_for_lid(session: AsyncSession, *, tenant_id: str, lid: str) -> str | None:
    """The phone chat id stored for `lid`, or None when it is not known yet."""
    found = await session.exec(
        select(WahaLid.phone).where(col(WahaLid.tenant_id) == tenant_id, col(WahaLid.lid) == lid)
    )
    return found.first()


async def remember_lid(session: AsyncSession, *, tenant_id: str, lid: str, phone: str) -> None:
    """Store the mapping (the first one written stays: a lid's phone does not change); commits."""
    connection = await session.connection()
    await connection.execute(
        insert(connection, _TABLE)
        .values(tenant_id=tenant_id, lid=lid, phone=phone)
        .on_conflict_do_nothing()
    )
    await session.commit()
