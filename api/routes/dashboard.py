"""The dashboard's numbers for a period in the tenant's time zone (definitions: models/dashboard.py
and README "Dashboard")."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import CurrentTenant, Session, State, settings_of
from api.errors import ApiError
from models.dashboard import MAX_DAYS, Dashboard, PeriodError, dashboard, resolve_period

router = APIRouter(prefix="/api/v1/dashboard", tags=["dashboard"])

ISO_DAY = r"^\d{4}-\d{2}-\d{2}$"
DAY = "A day as YYYY-MM-DD, in the tenant's time zone (2000-01-01 to 2099-12-31)."


@router.get("")
async def get_dashboard(
    tenant: CurrentTenant,
    session: Session,
    state: State,
    days: Annotated[
        int | None,
        Query(ge=1, le=MAX_DAYS, description="The last N days, today included (default 30)."),
    ] = None,
    since: Annotated[str | None, Query(pattern=ISO_DAY, description=f"First day. {DAY}")] = None,
    until: Annotated[
        str | None,
        Query(pattern=ISO_DAY, description=f"Last day, included (default today). {DAY}"),
    ] = None,
) -> Dashboard:
    """Messages per day, time to first reply, escalations by rule, lead quality, the funnel by
    stage, meetings and test drives booked, model cost, enrichment and CRM sync, for `days` or
    `since`..`until` (at most 366 days; not both)."""
    timezone = settings_of(state, tenant).timezone
    try:
        period = resolve_period(
            timezone=timezone, now=datetime.now(UTC), days=days, since=since, until=until
        )
    except PeriodError as exc:
        # The shape of the validation handler's 422, so clients parse one kind of detail.
        problem = {"loc": ["query", exc.field], "msg": exc.message, "type": "value_error"}
        raise ApiError(422, "invalid request", [{**problem, "input": exc.value}]) from None
    return await dashboard(session, tenant_id=tenant.id, period=period)
