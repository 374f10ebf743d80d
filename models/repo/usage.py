"""The LLM usage ledger and the providers' circuit-breaker state.

Times are UTC; a "day" is a UTC calendar day and a range is [start, end). Aggregation happens in
SQL on both databases; only the day expression differs (SQLite stores UTC text, so `date(at)` is
the UTC day; PostgreSQL stores timestamptz, so the day is taken in UTC explicitly, whatever the
session's time zone)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from sqlalchemy import Date, case, cast, func, insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.llm_tables import LlmCall, LlmProviderHealth
from models.repo.sql import table_of
from models.tables import utcnow
from models.usage import (
    SUCCESSFUL_OUTCOMES,
    BreakerState,
    LlmCallRecord,
    ProviderHealth,
    UsageGroup,
    UsageTotals,
)

GroupBy = Literal["day", "model", "step"]


def _dialect(session: AsyncSession) -> str:
    return session.sync_session.get_bind().dialect.name


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The UTC day as [start, end)."""
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start, start + timedelta(days=1)


async def record_call(session: AsyncSession, *, call: LlmCallRecord) -> LlmCall:
    row = LlmCall(**call.model_dump())
    session.add(row)
    await session.commit()
    return row


async def record_calls(session: AsyncSession, *, calls: Sequence[LlmCallRecord]) -> None:
    """Several ledger rows in one statement and one commit (a turn's perceive and write)."""
    if not calls:
        return
    # Core executemany: one driver call for all rows (the unit of work issued one INSERT per
    # row, to read back each id, which nobody needs here).
    await session.execute(insert(table_of(LlmCall)), [call.model_dump() for call in calls])
    await session.commit()


async def spent_on(session: AsyncSession, *, tenant_id: str, day: date) -> float:
    """The tenant's LLM cost in USD on the UTC day `day`."""
    start, end = day_bounds(day)
    statement = select(func.coalesce(func.sum(col(LlmCall.cost_usd)), 0)).where(
        LlmCall.tenant_id == tenant_id, col(LlmCall.at) >= start, col(LlmCall.at) < end
    )
    return float((await session.exec(statement)).one())


def _aggregates() -> list[ColumnElement[Any]]:
    error = case((col(LlmCall.outcome).in_([str(o) for o in SUCCESSFUL_OUTCOMES]), 0), else_=1)
    return [
        func.count().label("calls"),
        func.coalesce(func.sum(col(LlmCall.input_tokens)), 0).label("input_tokens"),
        func.coalesce(func.sum(col(LlmCall.output_tokens)), 0).label("output_tokens"),
        func.coalesce(func.sum(col(LlmCall.cached_tokens)), 0).label("cached_tokens"),
        func.coalesce(func.sum(col(LlmCall.cache_write_tokens)), 0).label("cache_write_tokens"),
        func.coalesce(func.sum(col(LlmCall.cost_usd)), 0).label("cost_usd"),
        func.coalesce(func.sum(error), 0).label("errors"),
        func.coalesce(func.avg(col(LlmCall.latency_ms)), 0).label("avg_latency_ms"),
    ]


def _totals(row: Any) -> dict[str, Any]:
    # PostgreSQL hands sums of integers back as int and averages as Decimal: normalise.
    return {
        "calls": int(row.calls),
        "input_tokens": int(row.input_tokens),
        "output_tokens": int(row.output_tokens),
        "cached_tokens": int(row.cached_tokens),
        "cache_write_tokens": int(row.cache_write_tokens),
        "cost_usd": round(float(row.cost_usd), 8),
        "errors": int(row.errors),
        "avg_latency_ms": round(float(row.avg_latency_ms), 1),
    }


def _day_key(session: AsyncSession) -> ColumnElement[Any]:
    if _dialect(session) == "postgresql":
        return cast(func.timezone("UTC", col(LlmCall.at)), Date)
    return func.date(col(LlmCall.at))


async def summarize(
    session: AsyncSession,
    *,
    tenant_id: str,
    start: datetime,
    end: datetime,
    group_by: GroupBy,
) -> list[UsageGroup]:
    """The tenant's calls in [start, end), grouped: by UTC day (key: ISO date, in order), by
    model (key: "provider:model") or by step; models and steps by cost, highest first."""
    keys: Sequence[ColumnElement[Any]]
    if group_by == "day":
        keys = [_day_key(session).label("k0")]
    elif group_by == "model":
        keys = [col(LlmCall.provider).label("k0"), col(LlmCall.model).label("k1")]
    elif group_by == "step":
        keys = [col(LlmCall.step).label("k0")]
    else:
        raise ValueError(f"unknown grouping {group_by!r}")
    statement = (
        select(*keys, *_aggregates())
        .where(LlmCall.tenant_id == tenant_id, col(LlmCall.at) >= start, col(LlmCall.at) < end)
        .group_by(*keys)
    )
    rows = (await session.exec(statement)).all()
    groups: list[UsageGroup] = []
    for row in rows:
        if group_by == "model":
            key = f"{row.k0}:{row.k1}"
        elif group_by == "day":
            key = row.k0 if isinstance(row.k0, str) else row.k0.isoformat()
        else:
            key = str(row.k0)
        groups.append(UsageGroup(key=key, **_totals(row)))
    if group_by == "day":
        return sorted(groups, key=lambda g: g.key)
    return sorted(groups, key=lambda g: (-g.cost_usd, g.key))


async def totals(
    session: AsyncSession, *, tenant_id: str, start: datetime, end: datetime
) -> UsageTotals:
    """The tenant's calls in [start, end), all together."""
    statement = select(*_aggregates()).where(
        LlmCall.tenant_id == tenant_id, col(LlmCall.at) >= start, col(LlmCall.at) < end
    )
    return UsageTotals(**_totals((await session.exec(statement)).one()))


async def conversation_usage(session: AsyncSession, *, conversation_id: str) -> UsageTotals:
    statement = select(*_aggregates()).where(LlmCall.conversation_id == conversation_id)
    return UsageTotals(**_totals((await session.exec(statement)).one()))


async def calls_for_conversation(
    session: AsyncSession, *, conversation_id: str
) -> list[LlmCallRecord]:
    """Every call of the conversation, oldest first, with its `output` summary (evaluation)."""
    statement = (
        select(LlmCall)
        .where(LlmCall.conversation_id == conversation_id)
        .order_by(col(LlmCall.at), col(LlmCall.id))
    )
    rows = (await session.exec(statement)).all()
    return [LlmCallRecord.model_validate(row, from_attributes=True) for row in rows]


async def set_provider_health(
    session: AsyncSession,
    *,
    key: str,
    worker: str,
    state: BreakerState,
    last_error: str | None,
) -> None:
    """Upsert the breaker state of (key, worker). `changed_at` moves only when the state does,
    so it says since when the breaker is in its state."""
    now = utcnow()
    values = {
        "key": key,
        "worker": worker,
        "state": str(state),
        "changed_at": now,
        "last_error": last_error,
    }
    insert = pg_insert if _dialect(session) == "postgresql" else sqlite_insert
    statement = insert(LlmProviderHealth).values(**values)
    current = LlmProviderHealth.__table__.c  # type: ignore[attr-defined]
    statement = statement.on_conflict_do_update(
        index_elements=["key", "worker"],
        set_={
            "state": statement.excluded.state,
            "last_error": statement.excluded.last_error,
            "changed_at": case(
                (current.state == statement.excluded.state, current.changed_at),
                else_=statement.excluded.changed_at,
            ),
        },
    )
    await session.exec(statement)
    await session.commit()


async def provider_health(session: AsyncSession) -> list[ProviderHealth]:
    statement = select(LlmProviderHealth).order_by(
        col(LlmProviderHealth.key), col(LlmProviderHealth.worker)
    )
    rows = (await session.exec(statement)).all()
    return [ProviderHealth.model_validate(row, from_attributes=True) for row in rows]
