"""LLM usage: the tenant's model calls and their cost, grouped, with today's budget."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from api.deps import CurrentTenant, Session, State, settings_of
from api.errors import ApiError
from models.budget import daily_budget_limit, remaining_usd, utc_today
from models.repo import usage as repo
from models.repo.usage import GroupBy
from models.usage import UsageGroup, UsageTotals

router = APIRouter(prefix="/api/v1/usage", tags=["usage"])

DEFAULT_RANGE = timedelta(days=30)
MAX_RANGE = timedelta(days=366)
BOUND = "An ISO date (2026-11-01) or datetime (2026-11-01T12:00:00Z); UTC unless it says otherwise."


class BudgetView(BaseModel):
    daily_usd: float | None = Field(description="The tenant's daily limit; null = unlimited.")
    spent_today_usd: float
    remaining_today_usd: float | None


class UsageView(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: datetime = Field(alias="from")
    to: datetime
    group_by: GroupBy
    groups: list[UsageGroup]
    totals: UsageTotals
    budget: BudgetView


def _problem(name: str, message: str, value: Any) -> ApiError:
    # The shape of the validation handler's 422, so clients parse one kind of detail.
    return ApiError(
        422,
        "invalid request",
        [{"loc": ["query", name], "msg": message, "type": "value_error", "input": value}],
    )


def _parse_bound(name: str, value: str, *, end: bool) -> datetime:
    """An ISO date or datetime, as an aware UTC datetime. A date as `to` includes that day."""
    text = value.strip()
    try:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            parsed = datetime.fromisoformat(text)
            if parsed.tzinfo is None:
                return parsed.replace(tzinfo=UTC)
            return parsed.astimezone(UTC)
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return start + timedelta(days=1) if end else start
    except ValueError:
        raise _problem(
            name, "expected an ISO date (2026-11-01) or datetime (2026-11-01T12:00:00Z)", value
        ) from None
    except OverflowError:
        raise _problem(name, "out of range", value) from None


@router.get("")
async def get_usage(
    tenant: CurrentTenant,
    session: Session,
    state: State,
    from_: Annotated[str | None, Query(alias="from", max_length=64, description=BOUND)] = None,
    to: Annotated[str | None, Query(max_length=64, description=BOUND)] = None,
    group_by: GroupBy = "day",
) -> UsageView:
    """`from`/`to`: ISO dates or datetimes (UTC unless they say otherwise); the range is
    [from, to), a date as `to` includes that day. Default: the last 30 days up to now."""
    end = _parse_bound("to", to, end=True) if to is not None else datetime.now(UTC)
    if from_ is not None:
        start = _parse_bound("from", from_, end=False)
    else:
        try:
            start = end - DEFAULT_RANGE
        except OverflowError:
            raise _problem("to", "out of range", to) from None
    if end < start:
        raise _problem("to", "`to` is before `from`", to)
    if end - start > MAX_RANGE:
        raise _problem("to", f"the range is longer than {MAX_RANGE.days} days", to)

    groups = await repo.summarize(
        session, tenant_id=tenant.id, start=start, end=end, group_by=group_by
    )
    totals = await repo.totals(session, tenant_id=tenant.id, start=start, end=end)

    limit = daily_budget_limit(settings_of(state, tenant), state.settings)
    # The API reads the ledger itself: it spends nothing, so there is nothing to cache.
    spent_today = await repo.spent_on(session, tenant_id=tenant.id, day=utc_today())
    return UsageView(
        from_=start,
        to=end,
        group_by=group_by,
        groups=groups,
        totals=totals,
        budget=BudgetView(
            daily_usd=limit,
            spent_today_usd=round(spent_today, 8),
            remaining_today_usd=remaining_usd(limit, spent_today),
        ),
    )
