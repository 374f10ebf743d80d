"""People and their sign-in sessions: every statement the users service runs (`models.users`
holds the rules)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, or_, update
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.repo.sql import table_of
from models.tables import Tenant
from models.user_tables import User, UserSession


async def get_user(session: AsyncSession, *, tenant_id: str, user_id: int) -> User | None:
    """The person with this id in this tenant (another tenant's person is None too)."""
    row = await session.get(User, user_id)
    return row if row is not None and row.tenant_id == tenant_id else None


async def get_user_by_email(session: AsyncSession, *, tenant_id: str, email: str) -> User | None:
    statement = select(User).where(User.tenant_id == tenant_id, User.email == email)
    return (await session.exec(statement)).first()


async def list_users(session: AsyncSession, *, tenant_id: str, limit: int) -> list[User]:
    statement = select(User).where(User.tenant_id == tenant_id).order_by(col(User.id)).limit(limit)
    return list((await session.exec(statement)).all())


async def count_users(session: AsyncSession, *, tenant_id: str) -> int:
    statement = select(func.count()).select_from(User).where(User.tenant_id == tenant_id)
    return int((await session.exec(statement)).one())


async def active_admin_ids(session: AsyncSession, *, tenant_id: str) -> list[int]:
    """The ids of the tenant's admins who can sign in, their rows locked until the transaction
    ends on PostgreSQL (two admins demoting each other at once: the second waits, then sees
    one admin left). SQLite has one writer at a time anyway."""
    statement = (
        select(User.id)
        .where(User.tenant_id == tenant_id, User.role == "admin", col(User.disabled).is_(False))
        .with_for_update()
    )
    return [row for row in (await session.exec(statement)).all() if row is not None]


async def tenant_exists(session: AsyncSession, *, tenant_id: str) -> bool:
    return await session.get(Tenant, tenant_id) is not None


async def insert_session(session: AsyncSession, *, row: UserSession) -> None:
    """Add a session to the caller's transaction (not committed)."""
    session.add(row)


async def session_with_user(
    session: AsyncSession, *, session_id: str
) -> tuple[UserSession, User, Tenant] | None:
    """A session, its person and their tenant, in one query (every signed-in request reads
    it); None when there is no such session."""
    statement = (
        select(UserSession, User, Tenant)
        .join(User, col(User.id) == col(UserSession.user_id))
        .join(Tenant, col(Tenant.id) == col(User.tenant_id))
        .where(UserSession.id == session_id)
    )
    found = (await session.exec(statement)).first()
    return None if found is None else (found[0], found[1], found[2])


async def touch_session(session: AsyncSession, *, session_id: str, at: datetime) -> None:
    """Move the session's `last_seen_at` forward to `at` (committed)."""
    table = table_of(UserSession)
    await session.execute(
        update(table)
        .where(table.c.id == session_id, table.c.last_seen_at < at)
        .values(last_seen_at=at)
    )
    await session.commit()


async def delete_session(session: AsyncSession, *, session_id: str) -> int:
    """Delete one session (not committed); how many rows went (0 or 1)."""
    table = table_of(UserSession)
    result = await session.execute(delete(table).where(table.c.id == session_id))
    return max(result.rowcount or 0, 0)  # type: ignore[attr-defined]


async def delete_user_sessions(
    session: AsyncSession, *, user_id: int, keep: str | None = None
) -> int:
    """Delete a person's sessions, all or all but `keep` (not committed)."""
    table = table_of(UserSession)
    statement = delete(table).where(table.c.user_id == user_id)
    if keep is not None:
        statement = statement.where(table.c.id != keep)
    result = await session.execute(statement)
    return max(result.rowcount or 0, 0)  # type: ignore[attr-defined]


async def delete_stale_sessions(
    session: AsyncSession, *, now: datetime, idle_since: datetime
) -> int:
    """Delete every session past its absolute end or idle since before `idle_since` (not
    committed)."""
    table = table_of(UserSession)
    result = await session.execute(
        delete(table).where(or_(table.c.expires_at <= now, table.c.last_seen_at < idle_since))
    )
    return max(result.rowcount or 0, 0)  # type: ignore[attr-defined]


async def delete_user(session: AsyncSession, *, row: User) -> None:
    """Delete a person and their sessions (not committed)."""
    assert row.id is not None
    await delete_user_sessions(session, user_id=row.id)
    await session.delete(row)
