"""The per-tenant daily LLM budget (UTC days): the limit, what is left, and a cheap check per call.

The ledger (`llm_calls`) is the truth. Reading it before every model call would add a database
round trip to each one, so `DailyBudget` keeps, per tenant and day, the spend it last read and
re-reads it at most every `refresh_seconds`. Calls this process records in between are added with
`add_spend`, so a burst in one process sees its own spending at once; other processes' spending
shows up within `refresh_seconds`. The overshoot is therefore bounded by what the other processes
spend in that window (plus calls already in flight). A call recorded just before a re-read and
reported through `add_spend` just after it is counted twice until the next re-read: the error
is on the safe side.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from models.db import Database
from models.repo import usage as usage_repo
from models.settings import Settings

DEFAULT_REFRESH_SECONDS = 5.0


def daily_budget_limit(tenant_settings: Any, settings: Settings) -> float | None:
    """The tenant's daily budget in USD: its `llm.daily_budget_usd`, else
    `LEADFLOW_LLM_DAILY_BUDGET_USD`; None = unlimited. 0 allows no calls at all."""
    # Read defensively: the tenant's `llm` block is optional (and older settings have none).
    own = getattr(getattr(tenant_settings, "llm", None), "daily_budget_usd", None)
    if own is not None:
        return max(0.0, float(own))
    return settings.llm_daily_budget_usd


def remaining_usd(limit_usd: float | None, spent_usd: float) -> float | None:
    """What is left of the day's budget (never negative); None = unlimited."""
    if limit_usd is None:
        return None
    return max(0.0, round(limit_usd - spent_usd, 8))


def utc_today() -> date:
    return datetime.now(UTC).date()


@dataclass
class _Spend:
    read_at: float  # monotonic clock
    from_ledger: float
    since_read: float = 0.0


class DailyBudget:
    """One per process. Not thread-safe; safe for concurrent coroutines on one event loop (the
    worst case is two re-reads at once, both correct)."""

    def __init__(
        self,
        *,
        refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.refresh_seconds = refresh_seconds
        self._clock = clock
        self._spend: dict[tuple[str, date], _Spend] = {}
        self._day: date | None = None

    async def spent(self, tenant_id: str, *, db: Database, today: date) -> float:
        """The tenant's spend on `today` (UTC) as far as this process knows."""
        if today != self._day:
            # A new day: yesterday's entries are never read again.
            self._spend = {k: v for k, v in self._spend.items() if k[1] == today}
            self._day = today
        key = (tenant_id, today)
        entry = self._spend.get(key)
        now = self._clock()
        if entry is None or now - entry.read_at >= self.refresh_seconds:
            async with db.session() as session:
                ledger = await usage_repo.spent_on(session, tenant_id=tenant_id, day=today)
            entry = _Spend(read_at=now, from_ledger=ledger)
            self._spend[key] = entry
        return entry.from_ledger + entry.since_read

    async def remaining(
        self, tenant_id: str, limit_usd: float | None, *, db: Database, today: date
    ) -> float | None:
        """USD left today; None = unlimited (and then the ledger is not read at all)."""
        if limit_usd is None:
            return None
        return remaining_usd(limit_usd, await self.spent(tenant_id, db=db, today=today))

    async def exhausted(
        self, tenant_id: str, limit_usd: float | None, *, db: Database, today: date
    ) -> bool:
        left = await self.remaining(tenant_id, limit_usd, db=db, today=today)
        return left is not None and left <= 0

    def add_spend(self, tenant_id: str, usd: float, *, day: date | None = None) -> None:
        """Count a call this process just recorded in the ledger (on `day`, default today UTC)
        until the next re-read. Without a cached entry there is nothing to correct: the next
        read sees the call in the ledger."""
        entry = self._spend.get((tenant_id, day or utc_today()))
        if entry is not None and usd > 0:
            entry.since_read += usd
